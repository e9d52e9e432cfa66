/*
 * _mixer: what recording and conference rooms share in the native relay. A pcm_fifo_t holds one
 * stream's 8 kHz samples between their arrival (a packet at a time, with its jitter) and the
 * relay's 20 ms tick, which takes a frame at a time; a stream that ran dry is taken again only once
 * it holds a cushion, so arrival jitter does not chop it. mix_minus gives each of a room's
 * participants the sum of everyone else (clipped), never their own voice.
 */
#ifndef MIXER_H
#define MIXER_H

#include <stdint.h>

#define MIX_FRAME 160                  /* 20 ms at 8 kHz */
#define PCM_FIFO (MIX_FRAME * 10)      /* samples waiting for the tick; older ones are dropped beyond */
#define PCM_CUSHION (MIX_FRAME * 2)    /* a stream that ran dry is taken again once it holds this much */
#define MIX_MAX 32                     /* participants of one room */

typedef struct {
    int16_t pcm[PCM_FIFO];
    int fill, refilling;
} pcm_fifo_t;

/* Append n samples, keeping the newest PCM_FIFO when the tick fell behind. */
void pcm_fifo_push(pcm_fifo_t *f, const int16_t *pcm, int n);

/* One frame into out[0], out[stride], ... (silence where the stream has none). */
void pcm_fifo_take(pcm_fifo_t *f, int16_t *out, int stride);

/* out[i] = in[0] + ... + in[n-1] - in[i], clipped to 16 bits, for each of n <= MIX_MAX frames. */
void mix_minus(int16_t in[][MIX_FRAME], int16_t out[][MIX_FRAME], int n);

#endif
