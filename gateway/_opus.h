/*
 * _opus: what the native relay (and bench/codec_work.c, which times the same codec work) needs of
 * libopus, as declared in opus/opus.h and opus/opus_defines.h. Nothing is linked: the library is
 * dlopen'ed (PyAV's bundled one, or the system's), so only its constants and function types are here,
 * with the one encoder set-up both use.
 */
#ifndef OPUS_H_RELAY
#define OPUS_H_RELAY

#include <stdint.h>

#define OPUS_APPLICATION_VOIP 2048
#define OPUS_SET_BITRATE_REQUEST 4002
#define OPUS_SET_COMPLEXITY_REQUEST 4010
#define OPUS_SET_INBAND_FEC_REQUEST 4012
#define OPUS_SET_PACKET_LOSS_PERC_REQUEST 4014
#define OPUS_SET_SIGNAL_REQUEST 4024
#define OPUS_SIGNAL_VOICE 3001

typedef void *(*opus_decoder_create_fn)(int32_t fs, int channels, int *error);
typedef int (*opus_decode_fn)(void *st, const unsigned char *data, int32_t len, int16_t *pcm,
                              int frame_size, int decode_fec);
typedef void (*opus_destroy_fn)(void *st);
typedef void *(*opus_encoder_create_fn)(int32_t fs, int channels, int application, int *error);
typedef int32_t (*opus_encode_fn)(void *st, const int16_t *pcm, int frame_size, unsigned char *data,
                                  int32_t max_data_bytes);
typedef int (*opus_encoder_ctl_fn)(void *st, int request, ...);

/* A voice encoder as the relay runs it: `bitrate` b/s, `complexity`, in-band FEC tuned for 10 % loss.
 * Returns 0, or libopus's error for the first setting it refused. */
static inline int opus_voice_settings(opus_encoder_ctl_fn ctl, void *encoder, int bitrate, int complexity)
{
    int err;
    if ((err = ctl(encoder, OPUS_SET_BITRATE_REQUEST, (int32_t)bitrate)) ||
        (err = ctl(encoder, OPUS_SET_COMPLEXITY_REQUEST, (int32_t)complexity)) ||
        (err = ctl(encoder, OPUS_SET_INBAND_FEC_REQUEST, (int32_t)1)) ||
        (err = ctl(encoder, OPUS_SET_PACKET_LOSS_PERC_REQUEST, (int32_t)10)) ||
        (err = ctl(encoder, OPUS_SET_SIGNAL_REQUEST, (int32_t)OPUS_SIGNAL_VOICE)))
        return err;
    return 0;
}

#endif
