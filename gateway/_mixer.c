/* See _mixer.h. No allocation, no locking: the relay's worker calls these under its lock. */
#include "_mixer.h"

#include <string.h>

void pcm_fifo_push(pcm_fifo_t *f, const int16_t *pcm, int n)
{
    if (n > PCM_FIFO) {
        pcm += n - PCM_FIFO;
        n = PCM_FIFO;
    }
    if (f->fill + n > PCM_FIFO) { /* the tick fell behind: keep the newest */
        int drop = f->fill + n - PCM_FIFO;
        memmove(f->pcm, f->pcm + drop, (size_t)(f->fill - drop) * sizeof f->pcm[0]);
        f->fill -= drop;
    }
    memcpy(f->pcm + f->fill, pcm, (size_t)n * sizeof f->pcm[0]);
    f->fill += n;
}

void pcm_fifo_take(pcm_fifo_t *f, int16_t *out, int stride)
{
    if (f->refilling && f->fill >= PCM_CUSHION)
        f->refilling = 0;
    int k = f->refilling ? 0 : f->fill < MIX_FRAME ? f->fill : MIX_FRAME;
    for (int i = 0; i < MIX_FRAME; i++)
        out[i * stride] = i < k ? f->pcm[i] : 0;
    memmove(f->pcm, f->pcm + k, (size_t)(f->fill - k) * sizeof f->pcm[0]);
    f->fill -= k;
    if (k < MIX_FRAME)
        f->refilling = 1;
}

void mix_minus(int16_t in[][MIX_FRAME], int16_t out[][MIX_FRAME], int n)
{
    for (int s = 0; s < MIX_FRAME; s++) {
        int32_t sum = 0;
        for (int i = 0; i < n; i++)
            sum += in[i][s];
        for (int i = 0; i < n; i++) {
            int32_t v = sum - in[i][s];
            out[i][s] = (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
        }
    }
}
