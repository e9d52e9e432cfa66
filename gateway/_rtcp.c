/* RTCP for one leg of a relayed call: see _rtcp.h. The sequence and jitter code follows RFC 3550's
 * appendices A.1, A.3 and A.8. */
#define _GNU_SOURCE
#include "_rtcp.h"

#include <string.h>
#include <time.h>

#define RTP_SEQ_MOD (1u << 16)
#define MAX_DROPOUT 3000
#define MAX_MISORDER 100
#define MIN_SEQUENTIAL 2
#define NTP_UNIX_OFFSET 2208988800u /* seconds from 1900 to 1970 */
#define MAX_RTT (60u << 16)         /* round trips above a minute (1/65536 s units) are someone's error */
#define PT_SR 200
#define PT_RR 201
#define PT_SDES 202
#define SDES_CNAME 1
#define SENDER_INFO 20
#define BLOCK 24

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void wr16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

uint64_t rtcp_ntp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec + NTP_UNIX_OFFSET) << 32 | ((uint64_t)ts.tv_nsec << 32) / 1000000000u;
}

void rtcp_init(rtcp_t *s, uint32_t ssrc, uint32_t clock_rate, const char *cname, size_t cname_len)
{
    memset(s, 0, sizeof *s);
    s->ssrc = ssrc;
    s->clock_rate = clock_rate;
    s->reports_since_sent = 2;
    s->cname_len = (uint8_t)(cname_len < RTCP_CNAME_MAX ? cname_len : RTCP_CNAME_MAX);
    memcpy(s->cname, cname, s->cname_len);
}

void rtcp_sent(rtcp_t *s, uint32_t ts, int payload, double now)
{
    s->packets++;
    s->octets += (uint32_t)payload;
    s->last_ts = ts;
    s->last_sent = now;
    s->reports_since_sent = 0;
}

/* ---- the stream received ---- */
static void init_seq(rtcp_t *s, uint16_t seq)
{
    s->base_seq = seq;
    s->max_seq = seq;
    s->bad_seq = RTP_SEQ_MOD + 1; /* so seq == bad_seq is false */
    s->cycles = 0;
    s->received = s->received_prior = s->expected_prior = 0;
}

/* RFC 3550 A.1: 1 if the packet counts (a source is valid after MIN_SEQUENTIAL packets in sequence). */
static int update_seq(rtcp_t *s, uint16_t seq)
{
    uint16_t udelta = (uint16_t)(seq - s->max_seq);
    if (s->probation) {
        if (seq == (uint16_t)(s->max_seq + 1)) {
            s->probation--;
            s->max_seq = seq;
            if (s->probation == 0) {
                init_seq(s, seq);
                s->received++;
                return 1;
            }
        } else {
            s->probation = MIN_SEQUENTIAL - 1;
            s->max_seq = seq;
        }
        return 0;
    }
    if (udelta < MAX_DROPOUT) {
        if (seq < s->max_seq)
            s->cycles += RTP_SEQ_MOD; /* wrapped */
        s->max_seq = seq;
    } else if (udelta <= RTP_SEQ_MOD - MAX_MISORDER) {
        if (seq != s->bad_seq) { /* a big jump: believed only when the next packet follows it */
            s->bad_seq = (seq + 1) & (RTP_SEQ_MOD - 1);
            return 0;
        }
        init_seq(s, seq); /* the sender restarted */
    } /* else a duplicate or a late packet */
    s->received++;
    return 1;
}

void rtcp_received(rtcp_t *s, const uint8_t *rtp, int timed, double now)
{
    uint32_t ssrc = rd32(rtp + 8);
    uint16_t seq = rd16(rtp + 2);
    if (!s->have_source || ssrc != s->source_ssrc) {
        s->have_source = 1;
        s->source_ssrc = ssrc;
        init_seq(s, seq);
        s->max_seq = (uint16_t)(seq - 1);
        s->probation = MIN_SEQUENTIAL;
        s->have_transit = 0;
        s->jitter = 0;
        s->fraction_lost = 0;
    }
    if (!update_seq(s, seq) || !timed)
        return;
    /* A.8: the difference of relative transit times, in timestamp units, smoothed by 1/16 */
    uint32_t arrival = (uint32_t)(uint64_t)(now * s->clock_rate);
    int32_t transit = (int32_t)(arrival - rd32(rtp + 4));
    if (s->have_transit) {
        int64_t d = (int32_t)((uint32_t)transit - (uint32_t)s->transit);
        s->jitter += ((double)(d < 0 ? -d : d) - s->jitter) / 16;
    }
    s->transit = transit;
    s->have_transit = 1;
}

int64_t rtcp_lost(const rtcp_t *s, uint32_t *expected)
{
    if (!s->have_source || s->probation) {
        *expected = 0;
        return 0;
    }
    *expected = s->cycles + s->max_seq - s->base_seq + 1;
    return (int64_t)*expected - s->received;
}

/* ---- reports out ---- */
static void write_block(rtcp_t *s, uint8_t *p, double now)
{
    uint32_t expected;
    int64_t lost = rtcp_lost(s, &expected);
    uint32_t expected_interval = expected - s->expected_prior, received_interval = s->received - s->received_prior;
    int64_t lost_interval = (int64_t)expected_interval - received_interval;
    s->expected_prior = expected;
    s->received_prior = s->received;
    int64_t fraction = expected_interval == 0 || lost_interval <= 0 ? 0 : (lost_interval << 8) / expected_interval;
    s->fraction_lost = (uint8_t)(fraction > 255 ? 255 : fraction);
    lost = lost > 0x7fffff ? 0x7fffff : lost < -0x800000 ? -0x800000 : lost;
    wr32(p, s->source_ssrc);
    wr32(p + 4, (uint32_t)s->fraction_lost << 24 | ((uint32_t)lost & 0xffffff));
    wr32(p + 8, s->cycles + s->max_seq);
    wr32(p + 12, s->jitter < 4294967295.0 ? (uint32_t)s->jitter : UINT32_MAX);
    double delay = now - s->sr_received;
    int echo = s->sr_received > 0 && s->sr_ssrc == s->source_ssrc && delay >= 0 && delay < 65536;
    wr32(p + 16, echo ? s->lsr : 0);
    wr32(p + 20, echo ? (uint32_t)(delay * 65536) : 0);
}

int rtcp_report(rtcp_t *s, uint8_t *out, double now, uint64_t ntp)
{
    int blocks = s->have_source && !s->probation;
    int sender = s->reports_since_sent < 2; /* RFC 3550 6.4 */
    int head = 8 + (sender ? SENDER_INFO : 0), size = head + BLOCK * blocks;
    out[0] = (uint8_t)(0x80 | blocks);
    out[1] = sender ? PT_SR : PT_RR;
    wr16(out + 2, (uint32_t)size / 4 - 1);
    wr32(out + 4, s->ssrc);
    if (sender) {
        double since = now > s->last_sent ? now - s->last_sent : 0;
        wr32(out + 8, (uint32_t)(ntp >> 32));
        wr32(out + 12, (uint32_t)ntp);
        wr32(out + 16, s->last_ts + (uint32_t)(uint64_t)(since * s->clock_rate));
        wr32(out + 20, s->packets);
        wr32(out + 24, s->octets);
    }
    if (blocks)
        write_block(s, out + head, now);
    if (sender)
        s->reports_since_sent++;
    /* SDES: one chunk with the CNAME, then null octets to the next 32-bit boundary (at least one) */
    uint8_t *sdes = out + size;
    int chunk = 4 + ((2 + s->cname_len + 1 + 3) & ~3);
    memset(sdes, 0, (size_t)(4 + chunk));
    sdes[0] = 0x81;
    sdes[1] = PT_SDES;
    wr16(sdes + 2, (uint32_t)(4 + chunk) / 4 - 1);
    wr32(sdes + 4, s->ssrc);
    sdes[8] = SDES_CNAME;
    sdes[9] = s->cname_len;
    memcpy(sdes + 10, s->cname, s->cname_len);
    return size + 4 + chunk;
}

/* ---- reports in ---- */
static void take_block(rtcp_t *s, const uint8_t *b, uint64_t ntp)
{
    if (rd32(b) != s->ssrc)
        return; /* about another source */
    uint32_t lost = (uint32_t)b[5] << 16 | (uint32_t)b[6] << 8 | b[7];
    s->have_remote = 1;
    s->remote_fraction_lost = b[4];
    s->remote_lost = (int32_t)(lost & 0x800000 ? lost | 0xff000000u : lost);
    s->remote_jitter = rd32(b + 12);
    uint32_t lsr = rd32(b + 16), dlsr = rd32(b + 20);
    if (lsr == 0)
        return; /* no SR of ours reached it yet */
    uint32_t rtt = (uint32_t)(ntp >> 16) - lsr - dlsr; /* RFC 3550 6.4.1, in 1/65536 s */
    if (rtt < MAX_RTT) {
        s->rtt = rtt / 65536.0;
        s->have_rtt = 1;
    }
}

/* Each packet of a compound one, checked (apply 0) or taken (apply 1); -1 at the first malformed one. */
static int walk(rtcp_t *s, const uint8_t *p, int len, double now, uint64_t ntp, int apply)
{
    if (len < 4)
        return -1;
    while (len > 0) {
        if (len < 4 || (p[0] >> 6) != 2)
            return -1;
        int size = (rd16(p + 2) + 1) * 4, count = p[0] & 0x1f;
        if (size > len)
            return -1;
        if (p[1] == PT_SR || p[1] == PT_RR) {
            int head = 8 + (p[1] == PT_SR ? SENDER_INFO : 0);
            if (size < head + BLOCK * count)
                return -1;
            if (apply && p[1] == PT_SR && (!s->have_source || rd32(p + 4) == s->source_ssrc)) {
                s->sr_ssrc = rd32(p + 4);
                s->lsr = rd32(p + 10); /* the middle 32 bits of its NTP timestamp */
                s->sr_received = now;
            }
            for (int i = 0; apply && i < count; i++)
                take_block(s, p + head + BLOCK * i, ntp);
        }
        p += size;
        len -= size;
    }
    return 0;
}

int rtcp_parse(rtcp_t *s, const uint8_t *p, int len, double now, uint64_t ntp)
{
    if (walk(s, p, len, now, ntp, 0) < 0)
        return -1;
    return walk(s, p, len, now, ntp, 1);
}
