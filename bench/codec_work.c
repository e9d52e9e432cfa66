/* The bare codec work of N bridged calls, nothing else: per 20 ms frame and call,
 * Opus decode to 8 kHz, G.711 mu-law encode and decode, Opus encode from 8 kHz,
 * with the native relay's encoder settings.  No sockets, no SRTP, no pacing: it
 * prints the CPU seconds that took, so bench/codecwork.py can say what a call's
 * codec work costs as a share of a core.
 *
 *   codec_work LIBOPUS PACKETS_FILE CALLS SECONDS
 *
 * PACKETS_FILE holds 20 ms Opus packets, each preceded by its length (2 bytes,
 * little-endian); they are played in a loop.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../gateway/_opus.h"

#define FRAME 160

static uint8_t ulaw_encode(int16_t sample)
{
    int sign = sample < 0 ? 0x80 : 0, magnitude = sample < 0 ? -sample : sample;
    if (magnitude > 32635)
        magnitude = 32635;
    magnitude += 0x84;
    int exponent = 7;
    for (int mask = 0x4000; !(magnitude & mask) && exponent > 0; mask >>= 1)
        exponent--;
    return (uint8_t)~(sign | exponent << 4 | (magnitude >> (exponent + 3) & 0x0f));
}

static int16_t ulaw_decode(uint8_t code)
{
    code = (uint8_t)~code;
    int magnitude = ((code & 0x0f) << 3 | 0x84) << (code >> 4 & 7);
    return (int16_t)(code & 0x80 ? 0x84 - magnitude : magnitude - 0x84);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s LIBOPUS PACKETS_FILE CALLS SECONDS\n", argv[0]);
        return 2;
    }
    void *opus = dlopen(argv[1], RTLD_NOW);
    if (!opus) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    opus_decoder_create_fn decoder_create = (opus_decoder_create_fn)dlsym(opus, "opus_decoder_create");
    opus_encoder_create_fn encoder_create = (opus_encoder_create_fn)dlsym(opus, "opus_encoder_create");
    opus_decode_fn decode = (opus_decode_fn)dlsym(opus, "opus_decode");
    opus_encode_fn encode = (opus_encode_fn)dlsym(opus, "opus_encode");
    opus_encoder_ctl_fn encoder_ctl = (opus_encoder_ctl_fn)dlsym(opus, "opus_encoder_ctl");
    if (!decoder_create || !encoder_create || !decode || !encode || !encoder_ctl) {
        fprintf(stderr, "libopus lacks a symbol\n");
        return 1;
    }
    FILE *file = fopen(argv[2], "rb");
    if (!file) {
        perror(argv[2]);
        return 1;
    }
    static unsigned char packets[4096][512];
    static int lengths[4096];
    int count = 0;
    unsigned char size[2];
    while (count < 4096 && fread(size, 1, 2, file) == 2) {
        lengths[count] = size[0] | size[1] << 8;
        if (lengths[count] > 512 || fread(packets[count], 1, (size_t)lengths[count], file) != (size_t)lengths[count])
            return 1;
        count++;
    }
    fclose(file);
    int calls = atoi(argv[3]), frames = (int)(atof(argv[4]) * 50);
    if (count == 0 || calls < 1 || frames < 1)
        return 2;
    void **decoders = calloc((size_t)calls, sizeof *decoders), **encoders = calloc((size_t)calls, sizeof *encoders);
    for (int c = 0; c < calls; c++) {
        int err = 0;
        decoders[c] = decoder_create(8000, 1, &err);
        encoders[c] = encoder_create(8000, 1, OPUS_APPLICATION_VOIP, &err);
        if (!decoders[c] || !encoders[c])
            return 1;
        if (opus_voice_settings(encoder_ctl, encoders[c], 20000, 5))
            return 1;
    }
    struct timespec start, end;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
    int16_t pcm[FRAME];
    uint8_t ulaw[FRAME];
    unsigned char out[512];
    long checksum = 0;
    for (int f = 0; f < frames; f++)
        for (int c = 0; c < calls; c++) {
            int p = (f + c) % count;
            int n = decode(decoders[c], packets[p], lengths[p], pcm, FRAME, 0);
            for (int i = 0; i < n; i++)
                ulaw[i] = ulaw_encode(pcm[i]);
            for (int i = 0; i < n; i++)
                pcm[i] = ulaw_decode(ulaw[i]);
            checksum += encode(encoders[c], pcm, FRAME, out, (int32_t)sizeof out);
        }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &end);
    printf("%.6f %ld\n", (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9, checksum);
    return 0;
}
