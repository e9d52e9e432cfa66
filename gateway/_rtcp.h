/*
 * _rtcp: RTCP for one leg of a relayed call (RFC 3550), with no I/O and no allocation. The relay tells
 * it each RTP packet it sends and takes in, asks it for a compound report (SR, or RR while it sends
 * nothing, with one report block for the stream it receives, and SDES CNAME) and hands it the far end's
 * compound packets. It keeps what the quality figures are made of: interarrival jitter, cumulative and
 * interval loss of what arrives (RFC 3550 A.1, A.3, A.8), the far end's view of what we send, and the
 * round trip from the LSR/DLSR of the far end's report blocks.
 */
#ifndef GATEWAY_RTCP_H
#define GATEWAY_RTCP_H

#include <stddef.h>
#include <stdint.h>

#define RTCP_CNAME_MAX 64
#define RTCP_REPORT_MAX 200 /* SR + one report block + SDES with the longest CNAME */

typedef struct {
    /* the stream this end sends */
    uint32_t ssrc, clock_rate;
    uint32_t packets, octets; /* RTP packets and payload octets sent, as the SR carries them (mod 2^32) */
    uint32_t last_ts;         /* timestamp of the last packet sent, at last_sent (monotonic seconds) */
    double last_sent;
    int reports_since_sent; /* a sender (SR) while below 2: it sent during the last two intervals */
    /* the stream received: RFC 3550 A.1 (sequence), A.8 (jitter) */
    int have_source;
    uint32_t source_ssrc;
    uint16_t max_seq;
    uint32_t cycles, base_seq, bad_seq, probation, received, expected_prior, received_prior;
    int have_transit;
    int32_t transit;
    double jitter; /* timestamp units */
    uint8_t fraction_lost; /* of the interval before the last report sent */
    /* the far end's last SR */
    uint32_t sr_ssrc, lsr; /* lsr: the middle 32 bits of its NTP timestamp */
    double sr_received;    /* monotonic seconds; 0 while none came */
    /* the far end's last report block about the stream this end sends */
    int have_remote;
    uint8_t remote_fraction_lost;
    int32_t remote_lost;
    uint32_t remote_jitter; /* timestamp units */
    int have_rtt;
    double rtt; /* seconds */
    uint8_t cname_len;
    char cname[RTCP_CNAME_MAX];
} rtcp_t;

/* The current time as a 64-bit NTP timestamp (seconds since 1900 in the high half). */
uint64_t rtcp_ntp_now(void);

/* A fresh state for a leg whose own stream is `ssrc` on a `clock_rate` Hz RTP clock. */
void rtcp_init(rtcp_t *s, uint32_t ssrc, uint32_t clock_rate, const char *cname, size_t cname_len);

/* This end sent an RTP packet whose stream clock reads `ts` now, with `payload` octets. */
void rtcp_sent(rtcp_t *s, uint32_t ts, int payload, double now);

/* An RTP packet of the far end arrived (header already checked: 12 bytes at least). A new SSRC
 * restarts the statistics; `timed` is 0 for packets whose timestamp is not the media clock's
 * (RFC 4733 events keep their start), which then count for loss but not jitter. */
void rtcp_received(rtcp_t *s, const uint8_t *rtp, int timed, double now);

/* The compound report to send now into `out` (RTCP_REPORT_MAX bytes); its length. */
int rtcp_report(rtcp_t *s, uint8_t *out, double now, uint64_t ntp);

/* A compound packet from the far end: SRs and report blocks are taken, other packets skipped.
 * 0, or -1 when any part of it is malformed (then none of it is taken). */
int rtcp_parse(rtcp_t *s, const uint8_t *p, int len, double now, uint64_t ntp);

/* Packets lost so far in the stream received (RFC 3550 A.3; negative with duplicates), and expected. */
int64_t rtcp_lost(const rtcp_t *s, uint32_t *expected);

#endif
