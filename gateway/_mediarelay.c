/*
 * _mediarelay: the native per-packet media path of one call, once both legs
 * are set up. Browser side: SRTP (libsrtp 2) with Opus; SIP side: plain RTP
 * with G.711 (PCMU/PCMA). Browser -> SIP: recvmmsg, RFC 7983 demultiplexing,
 * SRTP/SRTCP unprotect, a reorder window of REORDER_DEPTH packets, Opus
 * decoded straight to 8 kHz mono (Opus FEC from the next packet, else PLC, for
 * a gap), G.711 with our own tables, our own RTP seq/timestamp/SSRC. SIP ->
 * browser: source and header checks, G.711 decoded, re-framed into 20 ms,
 * Opus encoded from 8 kHz (in-band FEC on), 48 kHz timestamps, SRTP protect.
 * A Relay has ONE worker thread (epoll, level-triggered) that carries all its
 * calls; it never takes the GIL and never allocates per packet. It hands
 * back to Python, through a bounded queue signalled by an eventfd, the
 * browser socket's STUN and DTLS datagrams (aioice must keep answering
 * consent checks, DTLS alerts must reach aiortc) and the SIP side's
 * telephone-event RTP packets (kind 1, whole packets, for DTMF reporting),
 * and the new socket and address when it follows the browser's media (kind 2, no data).
 * libopus and libsrtp are dlopen'ed by init(); nothing is linked. Limits:
 * datagrams above RX_BUF bytes are dropped; the SIP source must be the
 * configured remote (no latching); the SRTP contexts start at rollover
 * counter 0, so a call must be handed over before either side sends 65536
 * RTP packets; RTCP is terminated on each leg, never forwarded: every
 * rtcp_interval the relay sends its own report (SR or RR, SDES) to the browser
 * (SRTCP, rtcp-mux, going on from the SRTCP index aiortc reached) and to the
 * SIP side's RTCP address (from its own RTCP socket, plain RTCP), and takes
 * the far ends' reports (_rtcp.c keeps the figures); there is no playout clock
 * (packets leave as they arrive, the far ends' jitter buffers absorb the
 * timing); SIP RTP is taken in arrival order (only older packets dropped);
 * SRTP is taken from any source on any of the call's browser sockets (every local socket of its ICE
 * connection: its authentication is the check), and what goes to the browser follows the socket and
 * source of its newest authenticated RTP packet; what is not SRTP goes back to Python with the index of
 * the socket it came on, so that the right ICE socket answers it.
 * Recording (record/recording): each leg's 8 kHz PCM as it is carried (the browser's as sent to SIP,
 * the SIP side's as sent to the browser) goes into a small buffer per leg; the tick takes 20 ms of
 * each per 20 ms of the monotonic clock (silence for a leg that has none, a leg refilling PCM_CUSHION
 * before it is taken again, so arrival jitter does not chop it) into one ring of interleaved stereo
 * s16 (browser left, SIP right) that Python drains in bulk. play() mixes PCM (a beep) into what goes
 * to SIP. Both buffers are allocated by those calls, never by the worker.
 * Conference rooms (add_call's room): a participant is a call with one leg, browser or SIP, in a room
 * of this relay. What its leg brings in, decoded to 8 kHz, goes into its own pcm_fifo_t (_mixer.c);
 * the tick takes a frame of every participant per 20 ms of the room's clock, and each gets the sum
 * of the others (mix-minus), encoded for its leg: Opus+SRTP to a browser, G.711 RTP to SIP.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "_mixer.h"
#include "_opus.h"
#include "_rtcp.h"

/* ---- libsrtp 2.x, as declared in srtp2/srtp.h (checked against 2.5 and 2.7) ---- */
typedef struct {
    int cipher_type;
    int cipher_key_len;
    int auth_type;
    int auth_key_len;
    int auth_tag_len;
    int sec_serv;
} srtp_crypto_policy_t;

typedef struct srtp_policy {
    struct {
        int type;
        unsigned int value;
    } ssrc;
    srtp_crypto_policy_t rtp;
    srtp_crypto_policy_t rtcp;
    unsigned char *key;
    void **keys;
    unsigned long num_master_keys;
    void *deprecated_ekt;
    unsigned long window_size;
    int allow_repeat_tx;
    int *enc_xtn_hdr;
    int enc_xtn_hdr_count;
    struct srtp_policy *next;
} srtp_policy_t;

#if defined(__x86_64__) || defined(__aarch64__)
_Static_assert(sizeof(srtp_policy_t) == 128, "srtp_policy_t must match libsrtp 2.x");
#endif

#define SRTP_OK 0
#define SRTP_BAD_PARAM 2
#define SRTP_AUTH_FAIL 7
#define SRTP_REPLAY_FAIL 9
#define SRTP_REPLAY_OLD 10
#define SSRC_ANY_INBOUND 2
#define SSRC_ANY_OUTBOUND 3
#define SRTP_PROFILE_AES128_CM_SHA1_80 1
#define SRTP_PROFILE_AEAD_AES_128_GCM 7
#define SRTP_PROFILE_AEAD_AES_256_GCM 8
#define SRTP_MAX_TRAILER_LEN (16 + 128)

typedef int (*srtp_init_fn)(void);
typedef int (*srtp_create_fn)(void **session, const srtp_policy_t *policy);
typedef int (*srtp_packet_fn)(void *ctx, void *hdr, int *len);
typedef int (*srtp_dealloc_fn)(void *ctx);
typedef int (*srtp_policy_from_profile_fn)(srtp_crypto_policy_t *policy, int profile);

static struct {
    void *opus_lib, *srtp_lib;
    opus_decoder_create_fn decoder_create;
    opus_decode_fn decode;
    opus_destroy_fn decoder_destroy;
    opus_encoder_create_fn encoder_create;
    opus_encode_fn encode;
    opus_encoder_ctl_fn encoder_ctl;
    opus_destroy_fn encoder_destroy;
    srtp_init_fn srtp_init;
    srtp_create_fn srtp_create;
    srtp_packet_fn protect, unprotect, protect_rtcp, unprotect_rtcp;
    srtp_dealloc_fn srtp_dealloc;
    srtp_policy_from_profile_fn policy_rtp, policy_rtcp;
} lib;

/* ---- sizes ---- */
#define RX_BUF 2048          /* largest datagram taken; larger ones are dropped */
#define TX_BUF (RX_BUF + SRTP_MAX_TRAILER_LEN)
#define RX_BATCH 16          /* datagrams per recvmmsg */
#define TX_BATCH 64          /* datagrams per sendmmsg */
#define MAX_EVENTS 64
#define REORDER_DEPTH 3      /* packets held after a gap before it is concealed */
#define MAX_FRAME_8K 960     /* 120 ms at 8 kHz: the longest Opus packet */
#define FRAME_8K 160         /* 20 ms at 8 kHz */
#define DTMF_PENDING 32      /* digits queued by send_dtmf */
#define DTMF_FRAMES 8        /* 160 ms of event per digit, then its end packets */
#define OPUS_MAX_PAYLOAD 1000
#define TICK_MS 20
#define MAX_TS_JUMP_8K (8000 * 10) /* larger timestamp jumps are not carried over */
#define MAX_MISORDER 100     /* a packet further behind than this restarts the sequence */
#define WAKE_TOKEN UINT64_MAX
#define KIND_BROWSER 0
#define KIND_TELEPHONE_EVENT 1
#define KIND_MOVED 2
#define LEG_SIP 0             /* what a call's epoll token names, with its handle above LEG_BITS bits */
#define LEG_SIP_RTCP 1
#define LEG_BROWSER 2         /* and up: the call's browser socket LEG_BROWSER + i */
#define LEG_BITS 4
#define MAX_BROWSER_SOCKETS 8 /* local ICE sockets of one call (host candidates) the relay reads */
#define OPUS_CLOCK 48000
#define G711_CLOCK 8000
#define MAX_SRTCP_INDEX (1u << 20) /* SRTCP packets aiortc may have sent before the hand-off */
#define ROOM_CATCH_UP 3          /* frames a room's tick makes at most at once; a longer stall is skipped */
#define REC_RING (FRAME_8K * 250) /* 5 s of stereo for Python to drain, whole frames */
#define PLAY_MAX (G711_CLOCK * 5) /* the longest sound play() takes */

enum {
    ST_BROWSER_RX_PACKETS, ST_BROWSER_RX_BYTES, ST_BROWSER_TX_PACKETS, ST_BROWSER_TX_BYTES,
    ST_SIP_RX_PACKETS, ST_SIP_RX_BYTES, ST_SIP_TX_PACKETS, ST_SIP_TX_BYTES,
    ST_SRTP_AUTH_FAILURES, ST_SRTP_REPLAYED, ST_SRTP_ERRORS, ST_RTCP_PACKETS,
    ST_DECODE_ERRORS, ST_ENCODE_ERRORS, ST_MALFORMED, ST_OVERSIZED, ST_DROPPED,
    ST_LATE, ST_CONCEALED, ST_FEC_RECOVERED, ST_HELD, ST_FOREIGN, ST_FOREIGN_DROPPED,
    ST_TELEPHONE_EVENTS, ST_SEND_ERRORS, ST_SIP_RTCP_RX_PACKETS, ST_SIP_RTCP_RX_BYTES, ST_SIP_RTCP_PACKETS,
    ST_BROWSER_RTCP_TX_PACKETS, ST_BROWSER_RTCP_TX_BYTES, ST_SIP_RTCP_TX_PACKETS, ST_SIP_RTCP_TX_BYTES,
    ST_RECORDING_DROPPED, ST_BROWSER_MOVED, ST_COUNT
};
static const char *const stat_names[ST_COUNT] = {
    "browser_rx_packets", "browser_rx_bytes", "browser_tx_packets", "browser_tx_bytes",
    "sip_rx_packets", "sip_rx_bytes", "sip_tx_packets", "sip_tx_bytes",
    "srtp_auth_failures", "srtp_replayed", "srtp_errors", "rtcp_packets",
    "decode_errors", "encode_errors", "malformed", "oversized", "dropped",
    "late", "concealed", "fec_recovered", "held", "foreign", "foreign_dropped",
    "telephone_events", "send_errors", "sip_rtcp_rx_packets", "sip_rtcp_rx_bytes", "sip_rtcp_packets",
    "browser_rtcp_tx_packets", "browser_rtcp_tx_bytes", "sip_rtcp_tx_packets", "sip_rtcp_tx_bytes",
    "recording_dropped", "browser_moved",
};

typedef struct {
    struct sockaddr_storage addr;
    socklen_t len;
} address_t;

typedef struct {
    uint16_t seq;
    uint32_t ts;
    uint16_t len;
    uint8_t used;
    uint8_t data[RX_BUF];
} held_t;

/* A call being recorded: each leg's samples until the tick takes them, and the stereo ring for Python. */
typedef struct {
    pcm_fifo_t leg[2];
    int16_t ring[2 * REC_RING];
    int head, count; /* in stereo samples, whole frames */
    double start;
    uint64_t done; /* stereo samples made since start */
} recording_t;

typedef struct {
    uint64_t handle;
    uint64_t stat[ST_COUNT];
    double last_browser_media, last_sip_media;
    /* browser leg: every local socket of its ICE connection, and the one its media now comes on and goes from */
    int browser_fds[MAX_BROWSER_SOCKETS];
    int nbrowser_fds, browser_socket;
    int browser_fd; /* browser_fds[browser_socket], or -1 without a browser leg */
    address_t browser_remote;
    void *srtp_rx, *srtp_tx;
    void *decoder, *encoder;
    uint8_t opus_pt;
    uint32_t browser_ssrc;
    uint16_t browser_seq;
    uint32_t browser_ts;
    /* browser -> SIP reorder window */
    int started, nheld, have_in_ts, sip_marker;
    uint16_t next_seq;
    uint32_t expected_in_ts;
    int last_frame;
    double held_since;
    held_t held[REORDER_DEPTH];
    /* SIP leg */
    int sip_fd;
    address_t sip_remote;
    uint8_t sip_pt;
    int dtmf_pt;
    int sip_send, sip_receive;
    uint32_t sip_ssrc;
    uint16_t sip_seq;
    uint32_t sip_ts;
    int sip_started;
    uint16_t sip_next_seq;
    uint32_t sip_expected_ts;
    int16_t acc[FRAME_8K];
    int nacc, browser_marker;
    /* RTCP: the SIP side's own socket and address (rtcp-mux is the browser's only) and each leg's figures */
    int sip_rtcp_fd;
    address_t sip_rtcp_remote;
    rtcp_t browser_rtcp, sip_rtcp;
    double rtcp_interval, next_report;
    uint64_t rng;
    /* RFC 4733 towards SIP: digits waiting, and the one being sent in place of audio */
    uint8_t dtmf_pending[DTMF_PENDING];
    int dtmf_npending, dtmf_event, dtmf_frames_left, dtmf_ends_left;
    uint32_t dtmf_ts;
    uint16_t dtmf_duration;
    recording_t *rec; /* NULL while not recording */
    int16_t *play;    /* mixed into what goes to SIP, play_pos up to play_len */
    int play_len, play_pos;
    struct room *room; /* NULL: an ordinary call, its two legs carried to each other */
    pcm_fifo_t *said;  /* in a room: what its one leg brought in, until the room's tick mixes it */
} call_t;

/* A conference room: its participants are the calls whose room points here. */
typedef struct room {
    uint32_t id; /* Python's name for it; 0: a free slot */
    int members;
    double start;
    uint64_t done; /* samples mixed since start */
} room_t;

typedef struct {
    uint64_t handle;
    int kind, socket; /* socket: the browser socket's index (0 for the SIP leg's) */
    uint16_t len;
    address_t source;
    uint8_t data[RX_BUF];
} foreign_t;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    pthread_t thread;
    int thread_started, closed, stop;
    int epfd, eventfd, wakefd;
    int max_calls, live_calls;
    uint32_t generation;
    call_t **calls;
    room_t *rooms; /* max_calls slots: a call is in one room at most */
    /* foreign queue (ring) */
    foreign_t *queue;
    int queue_size, queue_head, queue_count, queue_signalled;
    /* worker-owned buffers */
    uint8_t (*rx)[RX_BUF];
    struct mmsghdr rx_msgs[RX_BATCH];
    struct iovec rx_iov[RX_BATCH];
    struct sockaddr_storage rx_from[RX_BATCH];
    uint8_t (*tx)[TX_BUF];
    struct mmsghdr tx_msgs[TX_BATCH];
    struct iovec tx_iov[TX_BATCH];
    int tx_count, tx_fd;
    address_t *tx_dest;
    uint64_t *tx_stats; /* packets, bytes (consecutive in call_t.stat) */
    uint64_t *tx_errors;
    int16_t pcm[MAX_FRAME_8K];
    int16_t mix_in[MIX_MAX][MIX_FRAME], mix_out[MIX_MAX][MIX_FRAME]; /* a room's frame, as heard and as sent */
    double now;
} Relay;

/* ---- G.711 (our own tables, built at import) ---- */
static uint8_t ulaw_enc[16384], alaw_enc[8192];
static int16_t ulaw_dec[256], alaw_dec[256];

static uint8_t linear_to_ulaw(int x)
{
    int sign = 0;
    if (x < 0) {
        sign = 0x80;
        x = -x;
    }
    if (x > 32635)
        x = 32635;
    x += 0x84;
    int exp = 7;
    for (int mask = 0x4000; !(x & mask) && exp > 0; mask >>= 1)
        exp--;
    int mant = (x >> (exp + 3)) & 0x0f;
    return (uint8_t)~(sign | (exp << 4) | mant);
}

static int16_t ulaw_to_linear(uint8_t u)
{
    u = (uint8_t)~u;
    int exp = (u >> 4) & 7, x = ((((u & 0x0f) << 3) + 0x84) << exp) - 0x84;
    return (int16_t)((u & 0x80) ? -x : x);
}

static uint8_t linear_to_alaw(int x)
{
    int mask = 0xd5;
    if (x < 0) {
        mask = 0x55;
        x = -x - 1;
    }
    int m = x >> 3, seg = 0;
    while (seg < 7 && m >= (32 << seg))
        seg++;
    int mant = seg == 0 ? (m >> 1) : ((m >> seg) & 0x0f);
    return (uint8_t)(((seg << 4) | mant) ^ mask);
}

static int16_t alaw_to_linear(uint8_t a)
{
    a ^= 0x55;
    int seg = (a >> 4) & 7, mant = a & 0x0f;
    int x = seg == 0 ? (mant << 4) + 8 : ((mant << 4) + 0x108) << (seg - 1);
    return (int16_t)((a & 0x80) ? x : -x);
}

static void build_g711_tables(void)
{
    for (int i = 0; i < 16384; i++)
        ulaw_enc[i] = linear_to_ulaw((i - 8192) * 4);
    for (int i = 0; i < 8192; i++)
        alaw_enc[i] = linear_to_alaw((i - 4096) * 8);
    for (int i = 0; i < 256; i++) {
        ulaw_dec[i] = ulaw_to_linear((uint8_t)i);
        alaw_dec[i] = alaw_to_linear((uint8_t)i);
    }
}

static void g711_encode(int pt, const int16_t *pcm, int n, uint8_t *out)
{
    if (pt == 0)
        for (int i = 0; i < n; i++)
            out[i] = ulaw_enc[(pcm[i] >> 2) + 8192];
    else
        for (int i = 0; i < n; i++)
            out[i] = alaw_enc[(pcm[i] >> 3) + 4096];
}

/* ---- small helpers ---- */
static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void write_rtp_header(uint8_t *p, int marker, int pt, uint16_t seq, uint32_t ts, uint32_t ssrc)
{
    p[0] = 0x80;
    p[1] = (uint8_t)((marker ? 0x80 : 0) | (pt & 0x7f));
    p[2] = (uint8_t)(seq >> 8), p[3] = (uint8_t)seq;
    p[4] = (uint8_t)(ts >> 24), p[5] = (uint8_t)(ts >> 16), p[6] = (uint8_t)(ts >> 8), p[7] = (uint8_t)ts;
    p[8] = (uint8_t)(ssrc >> 24), p[9] = (uint8_t)(ssrc >> 16), p[10] = (uint8_t)(ssrc >> 8), p[11] = (uint8_t)ssrc;
}

/* The payload of an RTP packet of `len` bytes: offset and length, or -1 if malformed. */
static int rtp_payload(const uint8_t *p, int len, int *payload_len)
{
    if (len < 12 || (p[0] >> 6) != 2)
        return -1;
    int h = 12 + 4 * (p[0] & 0x0f);
    if (p[0] & 0x10) {
        if (h + 4 > len)
            return -1;
        h += 4 + 4 * rd16(p + h + 2);
    }
    if (p[0] & 0x20) {
        int pad = p[len - 1];
        if (pad == 0 || pad > len - h)
            return -1;
        len -= pad;
    }
    if (h > len)
        return -1;
    *payload_len = len - h;
    return h;
}

static int is_rtcp(const uint8_t *p) { return p[1] >= 192 && p[1] <= 223; }

static int same_address(const address_t *a, const struct sockaddr_storage *b)
{
    if (a->addr.ss_family != b->ss_family)
        return 0;
    if (b->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (b->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)b;
        return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
    }
    return 0;
}

/* ---- output batch: one destination at a time, flushed with sendmmsg ---- */
static void tx_begin(Relay *r, int fd, address_t *dest, uint64_t *packets_bytes, uint64_t *errors)
{
    r->tx_count = 0;
    r->tx_fd = fd;
    r->tx_dest = dest;
    r->tx_stats = packets_bytes;
    r->tx_errors = errors;
}

static void tx_flush(Relay *r)
{
    int sent = 0;
    while (sent < r->tx_count) {
        int n = sendmmsg(r->tx_fd, r->tx_msgs + sent, (unsigned)(r->tx_count - sent), MSG_DONTWAIT);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            *r->tx_errors += (uint64_t)(r->tx_count - sent);
            break;
        }
        for (int i = sent; i < sent + n; i++) {
            r->tx_stats[0]++;
            r->tx_stats[1] += r->tx_msgs[i].msg_len;
        }
        sent += n;
    }
    r->tx_count = 0;
}

static uint8_t *tx_slot(Relay *r)
{
    if (r->tx_count == TX_BATCH)
        tx_flush(r);
    return r->tx[r->tx_count];
}

static void tx_commit(Relay *r, int len)
{
    struct mmsghdr *m = &r->tx_msgs[r->tx_count];
    r->tx_iov[r->tx_count].iov_len = (size_t)len;
    m->msg_hdr.msg_name = &r->tx_dest->addr;
    m->msg_hdr.msg_namelen = r->tx_dest->len;
    r->tx_count++;
}

/* ---- foreign queue: datagrams for Python ---- */
static void hand_to_python(Relay *r, call_t *c, int kind, int sock, const uint8_t *data, int len,
                           const struct sockaddr_storage *from, socklen_t fromlen)
{
    if (r->queue_count == r->queue_size) {
        c->stat[ST_FOREIGN_DROPPED]++;
        return;
    }
    foreign_t *f = &r->queue[(r->queue_head + r->queue_count) % r->queue_size];
    f->handle = c->handle;
    f->kind = kind;
    f->socket = sock;
    f->len = (uint16_t)len;
    memcpy(f->data, data, (size_t)len);
    memcpy(&f->source.addr, from, sizeof *from);
    f->source.len = fromlen;
    r->queue_count++;
    c->stat[ST_FOREIGN]++;
}

/* ---- recording ---- */
static void rec_push(call_t *c, int leg, const int16_t *pcm, int n)
{
    if (c->rec)
        pcm_fifo_push(&c->rec->leg[leg], pcm, n);
}

/* As many stereo frames as the clock says are due since the recording started. */
static void rec_tick(Relay *r, call_t *c)
{
    recording_t *rec = c->rec;
    int16_t dropped[2 * FRAME_8K];
    uint64_t due = (uint64_t)((r->now - rec->start) * G711_CLOCK);
    while (rec->done + FRAME_8K <= due) {
        rec->done += FRAME_8K;
        int16_t *out = dropped;
        if (rec->count < REC_RING) {
            out = rec->ring + 2 * ((rec->head + rec->count) % REC_RING);
            rec->count += FRAME_8K;
        } else {
            c->stat[ST_RECORDING_DROPPED]++; /* Python did not drain it: the timeline goes on */
        }
        pcm_fifo_take(&rec->leg[0], out, 2);
        pcm_fifo_take(&rec->leg[1], out + 1, 2);
    }
}

/* ---- browser -> SIP ---- */

/* One RFC 4733 packet in place of a frame of audio: the event's start timestamp, the duration so far;
 * the last three carry the end bit (sent three times, as RFC 4733 asks, for loss). */
static void emit_dtmf(Relay *r, call_t *c, int n)
{
    if (c->dtmf_event < 0) {
        c->dtmf_event = c->dtmf_pending[0];
        memmove(c->dtmf_pending, c->dtmf_pending + 1, (size_t)--c->dtmf_npending);
        c->dtmf_frames_left = DTMF_FRAMES;
        c->dtmf_ends_left = 3;
        c->dtmf_ts = c->sip_ts;
        c->dtmf_duration = 0;
    }
    int first = c->dtmf_duration == 0;
    int end = c->dtmf_frames_left == 0;
    if (!end) {
        c->dtmf_duration = (uint16_t)(c->dtmf_duration + n);
        c->dtmf_frames_left--;
    }
    uint8_t *p = tx_slot(r);
    write_rtp_header(p, first, c->dtmf_pt, c->sip_seq++, c->dtmf_ts, c->sip_ssrc);
    p[12] = (uint8_t)c->dtmf_event;
    p[13] = (uint8_t)((end ? 0x80 : 0) | 10); /* end bit, volume -10 dBm0 */
    p[14] = (uint8_t)(c->dtmf_duration >> 8);
    p[15] = (uint8_t)c->dtmf_duration;
    tx_commit(r, 16);
    if (end && --c->dtmf_ends_left == 0) {
        c->dtmf_event = -1;
        c->sip_marker = 1; /* audio starts a new talkspurt */
    }
}

static void emit_to_sip(Relay *r, call_t *c, int16_t *pcm, int n)
{
    for (int i = 0; i < n && c->play_pos < c->play_len; i++) {
        int mixed = pcm[i] + c->play[c->play_pos++];
        pcm[i] = (int16_t)(mixed > 32767 ? 32767 : mixed < -32768 ? -32768 : mixed);
    }
    rec_push(c, 0, pcm, n);
    if (c->sip_send && c->dtmf_pt >= 0 && (c->dtmf_event >= 0 || c->dtmf_npending > 0)) {
        emit_dtmf(r, c, n);
        rtcp_sent(&c->sip_rtcp, c->sip_ts, 4, r->now);
    } else if (!c->sip_send) {
        c->stat[ST_HELD]++;
    } else {
        uint8_t *p = tx_slot(r);
        write_rtp_header(p, c->sip_marker, c->sip_pt, c->sip_seq++, c->sip_ts, c->sip_ssrc);
        g711_encode(c->sip_pt, pcm, n, p + 12);
        tx_commit(r, 12 + n);
        c->sip_marker = 0;
        rtcp_sent(&c->sip_rtcp, c->sip_ts, n, r->now);
    }
    c->sip_ts += (uint32_t)n;
}

/* What the browser said: to the SIP leg, or in a room to the mix. */
static void from_browser(Relay *r, call_t *c, int16_t *pcm, int n)
{
    if (c->room)
        pcm_fifo_push(c->said, pcm, n);
    else
        emit_to_sip(r, c, pcm, n);
}

static void decode_packet(Relay *r, call_t *c, const uint8_t *payload, int len, uint32_t ts)
{
    if (c->have_in_ts) {
        int32_t gap = (int32_t)(ts - c->expected_in_ts);
        if (gap > 0 && gap / 6 <= MAX_TS_JUMP_8K)
            c->sip_ts += (uint32_t)(gap / 6);
    }
    int n = lib.decode(c->decoder, payload, len, r->pcm, MAX_FRAME_8K, 0);
    if (n <= 0) {
        c->stat[ST_DECODE_ERRORS]++;
        return;
    }
    c->have_in_ts = 1;
    c->expected_in_ts = ts + (uint32_t)n * 6;
    c->last_frame = n;
    from_browser(r, c, r->pcm, n);
}

static held_t *held_at(call_t *c, uint16_t seq)
{
    held_t *h = &c->held[seq % REORDER_DEPTH];
    return h->used && h->seq == seq ? h : NULL;
}

static void release_ready(Relay *r, call_t *c)
{
    held_t *h;
    while (c->nheld > 0 && (h = held_at(c, c->next_seq)) != NULL) {
        decode_packet(r, c, h->data, h->len, h->ts);
        h->used = 0;
        c->nheld--;
        c->next_seq++;
    }
    c->held_since = r->now;
}

/* Fill the missing packet next_seq: Opus FEC from the packet after it if held, else PLC. */
static void conceal_one(Relay *r, call_t *c)
{
    held_t *next = held_at(c, (uint16_t)(c->next_seq + 1));
    int n = next ? lib.decode(c->decoder, next->data, next->len, r->pcm, c->last_frame, 1)
                 : lib.decode(c->decoder, NULL, 0, r->pcm, c->last_frame, 0);
    c->next_seq++;
    c->expected_in_ts += (uint32_t)c->last_frame * 6;
    if (n <= 0) {
        c->stat[ST_DECODE_ERRORS]++;
        return;
    }
    c->stat[next ? ST_FEC_RECOVERED : ST_CONCEALED]++;
    from_browser(r, c, r->pcm, n);
}

static void conceal_all_held(Relay *r, call_t *c)
{
    while (c->nheld > 0) {
        conceal_one(r, c);
        release_ready(r, c);
    }
}

static void reorder_push(Relay *r, call_t *c, uint16_t seq, uint32_t ts, const uint8_t *payload, int len)
{
    if (!c->started) {
        c->started = 1;
        c->next_seq = seq;
    }
    while ((int16_t)(seq - c->next_seq) > REORDER_DEPTH && c->nheld > 0) {
        conceal_one(r, c);
        release_ready(r, c);
    }
    int16_t d = (int16_t)(seq - c->next_seq);
    if (d < 0 && d >= -MAX_MISORDER) {
        c->stat[ST_LATE]++;
        return;
    }
    if (d < 0 || d > REORDER_DEPTH) { /* a jump, or a sender that started again: go on from here */
        conceal_all_held(r, c);
        c->next_seq = seq;
        c->sip_marker = 1;
        d = 0;
    }
    if (d == 0) {
        decode_packet(r, c, payload, len, ts);
        c->next_seq++;
        release_ready(r, c);
        return;
    }
    held_t *h = &c->held[seq % REORDER_DEPTH];
    if (h->used) {
        c->stat[ST_DROPPED]++; /* a duplicate */
        return;
    }
    h->used = 1;
    h->seq = seq;
    h->ts = ts;
    h->len = (uint16_t)len;
    memcpy(h->data, payload, (size_t)len);
    if (c->nheld++ == 0)
        c->held_since = r->now;
    while (c->nheld >= REORDER_DEPTH) {
        conceal_one(r, c);
        release_ready(r, c);
    }
}

static void srtp_failed(call_t *c, int status)
{
    if (status == SRTP_AUTH_FAIL)
        c->stat[ST_SRTP_AUTH_FAILURES]++;
    else if (status == SRTP_REPLAY_FAIL || status == SRTP_REPLAY_OLD)
        c->stat[ST_SRTP_REPLAYED]++;
    else
        c->stat[ST_SRTP_ERRORS]++;
}

/* SRTP authenticated a packet from `from` on browser socket `sock`, newer than any before: if the
 * browser's media moved there (another of its addresses, a NAT's new mapping, another of our addresses
 * when its ICE agent switched pairs), send there, from that socket, from now on, as rtpengine and Janus
 * latch. Never on unauthenticated packets: nobody without the keys can take the stream, and libsrtp
 * drops a replayed one first; nor on a late packet still coming the old way. Python hears of it
 * (KIND_MOVED), so that ICE consent checks follow too. */
static void follow_browser(Relay *r, call_t *c, int sock, const struct sockaddr_storage *from, socklen_t fromlen)
{
    if ((sock == c->browser_socket && same_address(&c->browser_remote, from)) ||
        fromlen > (socklen_t)sizeof c->browser_remote.addr)
        return;
    memcpy(&c->browser_remote.addr, from, fromlen);
    c->browser_remote.len = fromlen;
    c->browser_socket = sock;
    c->browser_fd = c->browser_fds[sock];
    c->stat[ST_BROWSER_MOVED]++;
    hand_to_python(r, c, KIND_MOVED, sock, (const uint8_t *)"", 0, from, fromlen);
}

static void browser_datagram(Relay *r, call_t *c, int sock, uint8_t *p, int len,
                             const struct sockaddr_storage *from, socklen_t fromlen)
{
    uint8_t b0 = p[0];
    if (b0 <= 3 || (b0 >= 20 && b0 <= 63)) { /* RFC 7983: STUN, DTLS */
        hand_to_python(r, c, KIND_BROWSER, sock, p, len, from, fromlen);
        return;
    }
    if (b0 < 128 || b0 > 191 || len < 12) {
        c->stat[ST_MALFORMED]++;
        return;
    }
    int status;
    if (is_rtcp(p)) {
        status = lib.unprotect_rtcp(c->srtp_rx, p, &len);
        if (status != SRTP_OK) {
            srtp_failed(c, status);
            return;
        }
        c->stat[ST_RTCP_PACKETS]++;
        c->last_browser_media = r->now;
        if (rtcp_parse(&c->browser_rtcp, p, len, r->now, rtcp_ntp_now()) < 0)
            c->stat[ST_MALFORMED]++;
        return;
    }
    status = lib.unprotect(c->srtp_rx, p, &len);
    if (status != SRTP_OK) {
        srtp_failed(c, status);
        return;
    }
    c->last_browser_media = r->now;
    if (!c->browser_rtcp.have_source || (int16_t)(rd16(p + 2) - c->browser_rtcp.max_seq) > 0)
        follow_browser(r, c, sock, from, fromlen);
    int plen, off = rtp_payload(p, len, &plen);
    if (off < 0 || plen == 0) {
        c->stat[ST_MALFORMED]++;
        return;
    }
    if ((p[1] & 0x7f) != c->opus_pt) {
        c->stat[ST_DROPPED]++;
        return;
    }
    rtcp_received(&c->browser_rtcp, p, 1, r->now);
    reorder_push(r, c, rd16(p + 2), rd32(p + 4), p + off, plen);
}

/* ---- SIP -> browser ---- */
static void emit_to_browser(Relay *r, call_t *c)
{
    rec_push(c, 1, c->acc, FRAME_8K);
    uint8_t *p = tx_slot(r);
    int32_t n = lib.encode(c->encoder, c->acc, FRAME_8K, p + 12, OPUS_MAX_PAYLOAD);
    uint32_t ts = c->browser_ts;
    c->browser_ts += FRAME_8K * 6;
    if (n <= 0) {
        c->stat[ST_ENCODE_ERRORS]++;
        return;
    }
    write_rtp_header(p, c->browser_marker, c->opus_pt, c->browser_seq++, ts, c->browser_ssrc);
    int len = 12 + n, status = lib.protect(c->srtp_tx, p, &len);
    if (status != SRTP_OK || len > TX_BUF) {
        c->stat[ST_SRTP_ERRORS]++;
        return;
    }
    c->browser_marker = 0;
    tx_commit(r, len);
    rtcp_sent(&c->browser_rtcp, ts, n, r->now);
}

static void sip_datagram(Relay *r, call_t *c, const uint8_t *p, int len, const struct sockaddr_storage *from,
                         socklen_t fromlen)
{
    if (!same_address(&c->sip_remote, from)) {
        c->stat[ST_DROPPED]++;
        return;
    }
    if (!c->sip_receive) {
        c->stat[ST_HELD]++;
        return;
    }
    int plen, off = rtp_payload(p, len, &plen);
    if (off < 0 || is_rtcp(p)) {
        c->stat[ST_MALFORMED]++;
        return;
    }
    int pt = p[1] & 0x7f;
    if (pt == c->dtmf_pt) {
        c->stat[ST_TELEPHONE_EVENTS]++;
        c->last_sip_media = r->now;
        rtcp_received(&c->sip_rtcp, p, 0, r->now); /* an event's timestamp is its start, not the clock */
        hand_to_python(r, c, KIND_TELEPHONE_EVENT, 0, p, len, from, fromlen);
        return;
    }
    if (pt != c->sip_pt || plen == 0) {
        c->stat[ST_DROPPED]++;
        return;
    }
    rtcp_received(&c->sip_rtcp, p, 1, r->now);
    uint16_t seq = rd16(p + 2);
    uint32_t ts = rd32(p + 4);
    if (c->sip_started) {
        int16_t d = (int16_t)(seq - c->sip_next_seq);
        if (d < 0 && d >= -MAX_MISORDER) {
            c->stat[ST_LATE]++;
            return;
        }
        int32_t gap = (int32_t)(ts - c->sip_expected_ts);
        if (gap > 0 && gap <= MAX_TS_JUMP_8K) { /* silence suppressed upstream: keep the clock */
            c->browser_ts += (uint32_t)gap * 6;
            c->nacc = 0;
        }
    }
    c->sip_started = 1;
    c->sip_next_seq = (uint16_t)(seq + 1);
    c->sip_expected_ts = ts + (uint32_t)plen;
    c->last_sip_media = r->now;
    const int16_t *table = c->sip_pt == 0 ? ulaw_dec : alaw_dec;
    if (c->room) { /* what the SIP side said goes to the mix */
        for (int i = 0; i < plen; i += MAX_FRAME_8K) {
            int k = plen - i < MAX_FRAME_8K ? plen - i : MAX_FRAME_8K;
            for (int j = 0; j < k; j++)
                r->pcm[j] = table[p[off + i + j]];
            pcm_fifo_push(c->said, r->pcm, k);
        }
        return;
    }
    for (int i = 0; i < plen; i++) {
        c->acc[c->nacc++] = table[p[off + i]];
        if (c->nacc == FRAME_8K) {
            emit_to_browser(r, c);
            c->nacc = 0;
        }
    }
}

static void sip_rtcp_datagram(Relay *r, call_t *c, const uint8_t *p, int len, const struct sockaddr_storage *from)
{
    if (!same_address(&c->sip_rtcp_remote, from)) {
        c->stat[ST_DROPPED]++;
        return;
    }
    if (rtcp_parse(&c->sip_rtcp, p, len, r->now, rtcp_ntp_now()) < 0) {
        c->stat[ST_MALFORMED]++;
        return;
    }
    c->stat[ST_SIP_RTCP_PACKETS]++;
}

/* ---- conference rooms ---- */

/* One mixed frame to a participant's one leg. */
static void room_emit(Relay *r, call_t *c, const int16_t *pcm)
{
    if (c->browser_fd >= 0) {
        memcpy(c->acc, pcm, sizeof c->acc);
        tx_begin(r, c->browser_fd, &c->browser_remote, &c->stat[ST_BROWSER_TX_PACKETS], &c->stat[ST_SEND_ERRORS]);
        emit_to_browser(r, c);
    } else {
        memcpy(r->pcm, pcm, FRAME_8K * sizeof *pcm);
        tx_begin(r, c->sip_fd, &c->sip_remote, &c->stat[ST_SIP_TX_PACKETS], &c->stat[ST_SEND_ERRORS]);
        emit_to_sip(r, c, r->pcm, FRAME_8K);
    }
    tx_flush(r);
}

/* Every frame the room's clock says is due: each participant's taken, and each sent the others'. */
static void room_tick(Relay *r, room_t *room)
{
    call_t *members[MIX_MAX];
    int n = 0;
    for (int i = 0; i < r->max_calls && n < MIX_MAX; i++)
        if (r->calls[i] && r->calls[i]->room == room)
            members[n++] = r->calls[i];
    uint64_t due = (uint64_t)((r->now - room->start) * G711_CLOCK);
    if (due > room->done + ROOM_CATCH_UP * FRAME_8K) /* the worker stalled: what it missed is gone */
        room->done = due - ROOM_CATCH_UP * FRAME_8K;
    while (room->done + FRAME_8K <= due) {
        room->done += FRAME_8K;
        for (int i = 0; i < n; i++)
            pcm_fifo_take(members[i]->said, r->mix_in[i], 1);
        mix_minus(r->mix_in, r->mix_out, n);
        for (int i = 0; i < n; i++)
            room_emit(r, members[i], r->mix_out[i]);
    }
}

/* ---- RTCP reports out ---- */
static double random_unit(call_t *c) /* xorshift64: 0 <= x < 1 */
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return (double)(c->rng >> 11) / 9007199254740992.0;
}

/* Both legs' reports; the next in rtcp_interval times 0.5..1.5 (RFC 3550 6.3.1's randomisation). */
static void send_reports(Relay *r, call_t *c)
{
    uint64_t ntp = rtcp_ntp_now();
    if (c->browser_fd >= 0) {
        tx_begin(r, c->browser_fd, &c->browser_remote, &c->stat[ST_BROWSER_RTCP_TX_PACKETS], &c->stat[ST_SEND_ERRORS]);
        uint8_t *p = tx_slot(r);
        int len = rtcp_report(&c->browser_rtcp, p, r->now, ntp);
        if (lib.protect_rtcp(c->srtp_tx, p, &len) == SRTP_OK)
            tx_commit(r, len);
        else
            c->stat[ST_SRTP_ERRORS]++;
        tx_flush(r);
    }
    if (c->sip_rtcp_fd >= 0) {
        tx_begin(r, c->sip_rtcp_fd, &c->sip_rtcp_remote, &c->stat[ST_SIP_RTCP_TX_PACKETS], &c->stat[ST_SEND_ERRORS]);
        uint8_t *p = tx_slot(r);
        tx_commit(r, rtcp_report(&c->sip_rtcp, p, r->now, ntp));
        tx_flush(r);
    }
    c->next_report = r->now + c->rtcp_interval * (0.5 + random_unit(c));
}

/* ---- the worker ---- */
static call_t *lookup(Relay *r, uint64_t handle)
{
    uint64_t slot = handle & 0xffff;
    if (slot >= (uint64_t)r->max_calls || r->calls[slot] == NULL || r->calls[slot]->handle != handle)
        return NULL;
    return r->calls[slot];
}

static void readable(Relay *r, call_t *c, int leg)
{
    int sock = leg - LEG_BROWSER;
    int fd = leg >= LEG_BROWSER ? c->browser_fds[sock] : leg == LEG_SIP ? c->sip_fd : c->sip_rtcp_fd;
    for (int i = 0; i < RX_BATCH; i++)
        r->rx_msgs[i].msg_hdr.msg_namelen = sizeof r->rx_from[i];
    int n = recvmmsg(fd, r->rx_msgs, RX_BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0)
        return;
    if (leg == LEG_SIP)
        tx_begin(r, c->browser_fd, &c->browser_remote, &c->stat[ST_BROWSER_TX_PACKETS], &c->stat[ST_SEND_ERRORS]);
    else if (leg >= LEG_BROWSER)
        tx_begin(r, c->sip_fd, &c->sip_remote, &c->stat[ST_SIP_TX_PACKETS], &c->stat[ST_SEND_ERRORS]);
    uint64_t *rx = &c->stat[leg >= LEG_BROWSER ? ST_BROWSER_RX_PACKETS
                            : leg == LEG_SIP   ? ST_SIP_RX_PACKETS
                                               : ST_SIP_RTCP_RX_PACKETS];
    for (int i = 0; i < n; i++) {
        struct msghdr *h = &r->rx_msgs[i].msg_hdr;
        int len = (int)r->rx_msgs[i].msg_len;
        rx[0]++;
        rx[1] += (uint64_t)len;
        if ((h->msg_flags & MSG_TRUNC) || len > RX_BUF) {
            c->stat[ST_OVERSIZED]++;
            continue;
        }
        if (len == 0) {
            c->stat[ST_MALFORMED]++;
            continue;
        }
        if (leg == LEG_SIP)
            sip_datagram(r, c, r->rx[i], len, &r->rx_from[i], h->msg_namelen);
        else if (leg >= LEG_BROWSER)
            browser_datagram(r, c, sock, r->rx[i], len, &r->rx_from[i], h->msg_namelen);
        else
            sip_rtcp_datagram(r, c, r->rx[i], len, &r->rx_from[i]);
    }
    tx_flush(r);
}

static void tick(Relay *r)
{
    for (int i = 0; i < r->max_calls; i++) {
        call_t *c = r->calls[i];
        if (c && c->nheld > 0 && r->now - c->held_since >= REORDER_DEPTH * TICK_MS / 1000.0) {
            tx_begin(r, c->sip_fd, &c->sip_remote, &c->stat[ST_SIP_TX_PACKETS], &c->stat[ST_SEND_ERRORS]);
            conceal_all_held(r, c);
            tx_flush(r);
        }
        if (c && r->now >= c->next_report)
            send_reports(r, c);
        if (c && c->rec)
            rec_tick(r, c);
    }
    for (int i = 0; i < r->max_calls; i++)
        if (r->rooms[i].id)
            room_tick(r, &r->rooms[i]);
}

static void *worker(void *arg)
{
    Relay *r = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    struct epoll_event events[MAX_EVENTS];
    double last_tick = 0;
    int timeout = -1;
    for (;;) {
        /* Without calls nothing needs the tick: the thread sleeps until a packet or the wake fd (a new call, stop). */
        int n = epoll_wait(r->epfd, events, MAX_EVENTS, timeout);
        pthread_mutex_lock(&r->lock);
        if (r->stop) {
            pthread_mutex_unlock(&r->lock);
            return NULL;
        }
        r->now = monotonic_now();
        int queued = r->queue_count;
        for (int i = 0; i < n; i++) {
            uint64_t token = events[i].data.u64, woken;
            if (token == WAKE_TOKEN && read(r->wakefd, &woken, sizeof woken) < 0) { /* already drained */
            }
            call_t *c = token == WAKE_TOKEN ? NULL : lookup(r, token >> LEG_BITS);
            if (c)
                readable(r, c, (int)(token & ((1u << LEG_BITS) - 1)));
        }
        if (r->now - last_tick >= TICK_MS / 1000.0) {
            tick(r);
            last_tick = r->now;
        }
        if (r->queue_count > queued && !r->queue_signalled) {
            uint64_t one = 1;
            if (write(r->eventfd, &one, sizeof one) == sizeof one)
                r->queue_signalled = 1;
        }
        /* With calls, wake for the next tick whatever the packets do (rooms and recordings are paced by it). */
        int until_tick = (int)((last_tick + TICK_MS / 1000.0 - monotonic_now()) * 1000.0) + 1;
        timeout = r->live_calls == 0 ? -1 : until_tick < 1 ? 1 : until_tick > TICK_MS ? TICK_MS : until_tick;
        pthread_mutex_unlock(&r->lock);
    }
}

/* ---- libraries ---- */
static PyObject *mr_init(PyObject *self, PyObject *args)
{
    const char *opus_path, *srtp_path;
    if (!PyArg_ParseTuple(args, "ss", &opus_path, &srtp_path))
        return NULL;
    void *opus = dlopen(opus_path, RTLD_NOW | RTLD_LOCAL);
    if (!opus)
        return PyErr_Format(PyExc_OSError, "cannot load libopus from %s: %s", opus_path, dlerror());
    void *srtp = dlopen(srtp_path, RTLD_NOW | RTLD_LOCAL);
    if (!srtp) {
        PyErr_Format(PyExc_OSError, "cannot load libsrtp from %s: %s", srtp_path, dlerror());
        dlclose(opus);
        return NULL;
    }
    struct {
        void *handle;
        const char *path, *name;
        void **to;
    } symbols[] = {
        {opus, opus_path, "opus_decoder_create", (void **)&lib.decoder_create},
        {opus, opus_path, "opus_decode", (void **)&lib.decode},
        {opus, opus_path, "opus_decoder_destroy", (void **)&lib.decoder_destroy},
        {opus, opus_path, "opus_encoder_create", (void **)&lib.encoder_create},
        {opus, opus_path, "opus_encode", (void **)&lib.encode},
        {opus, opus_path, "opus_encoder_ctl", (void **)&lib.encoder_ctl},
        {opus, opus_path, "opus_encoder_destroy", (void **)&lib.encoder_destroy},
        {srtp, srtp_path, "srtp_init", (void **)&lib.srtp_init},
        {srtp, srtp_path, "srtp_create", (void **)&lib.srtp_create},
        {srtp, srtp_path, "srtp_protect", (void **)&lib.protect},
        {srtp, srtp_path, "srtp_unprotect", (void **)&lib.unprotect},
        {srtp, srtp_path, "srtp_protect_rtcp", (void **)&lib.protect_rtcp},
        {srtp, srtp_path, "srtp_unprotect_rtcp", (void **)&lib.unprotect_rtcp},
        {srtp, srtp_path, "srtp_dealloc", (void **)&lib.srtp_dealloc},
        {srtp, srtp_path, "srtp_crypto_policy_set_from_profile_for_rtp", (void **)&lib.policy_rtp},
        {srtp, srtp_path, "srtp_crypto_policy_set_from_profile_for_rtcp", (void **)&lib.policy_rtcp},
    };
    size_t count = sizeof symbols / sizeof symbols[0];
    void *found[sizeof symbols / sizeof symbols[0]];
    for (size_t i = 0; i < count; i++) {
        found[i] = dlsym(symbols[i].handle, symbols[i].name);
        if (!found[i]) {
            dlclose(opus);
            dlclose(srtp);
            return PyErr_Format(PyExc_OSError, "%s has no %s", symbols[i].path, symbols[i].name);
        }
    }
    if (lib.opus_lib) { /* already initialised: the first libraries stay */
        dlclose(opus);
        dlclose(srtp);
        Py_RETURN_NONE;
    }
    for (size_t i = 0; i < count; i++)
        *symbols[i].to = found[i];
    /* Once pylibsrtp has initialised the same library, srtp_init reports bad_param: its debug
     * module is registered already. The library is then ready all the same. */
    int status = lib.srtp_init();
    if (status != SRTP_OK && status != SRTP_BAD_PARAM) {
        memset(&lib, 0, sizeof lib);
        dlclose(opus);
        dlclose(srtp);
        return PyErr_Format(PyExc_OSError, "srtp_init failed (%d)", status);
    }
    lib.opus_lib = opus;
    lib.srtp_lib = srtp;
    Py_RETURN_NONE;
}

/* ---- Relay ---- */
static int relay_init(Relay *r, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"max_calls", "queue_size", NULL};
    int max_calls = 64, queue_size = 256;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|ii", keywords, &max_calls, &queue_size))
        return -1;
    if (!lib.opus_lib) {
        PyErr_SetString(PyExc_RuntimeError, "init(opus_path, srtp_path) has not succeeded");
        return -1;
    }
    if (r->calls) {
        PyErr_SetString(PyExc_RuntimeError, "Relay is already initialised");
        return -1;
    }
    if (max_calls < 1 || max_calls > 65535 || queue_size < 1 || queue_size > 65536) {
        PyErr_SetString(PyExc_ValueError, "max_calls must be 1..65535 and queue_size 1..65536");
        return -1;
    }
    r->epfd = r->eventfd = r->wakefd = -1;
    r->max_calls = max_calls;
    r->queue_size = queue_size;
    r->calls = PyMem_Calloc((size_t)max_calls, sizeof *r->calls);
    r->rooms = PyMem_Calloc((size_t)max_calls, sizeof *r->rooms);
    r->queue = PyMem_Calloc((size_t)queue_size, sizeof *r->queue);
    r->rx = PyMem_Calloc(RX_BATCH, sizeof *r->rx);
    r->tx = PyMem_Calloc(TX_BATCH, sizeof *r->tx);
    if (!r->calls || !r->rooms || !r->queue || !r->rx || !r->tx) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < RX_BATCH; i++) {
        r->rx_iov[i] = (struct iovec){r->rx[i], RX_BUF};
        r->rx_msgs[i].msg_hdr = (struct msghdr){.msg_name = &r->rx_from[i], .msg_iov = &r->rx_iov[i], .msg_iovlen = 1};
    }
    for (int i = 0; i < TX_BATCH; i++) {
        r->tx_iov[i].iov_base = r->tx[i];
        r->tx_msgs[i].msg_hdr = (struct msghdr){.msg_iov = &r->tx_iov[i], .msg_iovlen = 1};
    }
    pthread_mutex_init(&r->lock, NULL);
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    r->eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TOKEN};
    if (r->epfd < 0 || r->eventfd < 0 || r->wakefd < 0 || epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->wakefd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int err = pthread_create(&r->thread, NULL, worker, r);
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_setname_np(r->thread, "mediarelay"); /* for top -H and the bench's CPU figure */
    r->thread_started = 1;
    return 0;
}

static void relay_lock(Relay *r)
{
    if (pthread_mutex_trylock(&r->lock) != 0) {
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&r->lock);
        Py_END_ALLOW_THREADS
    }
}

static void free_call(call_t *c)
{
    if (c->srtp_rx)
        lib.srtp_dealloc(c->srtp_rx);
    if (c->srtp_tx)
        lib.srtp_dealloc(c->srtp_tx);
    if (c->decoder)
        lib.decoder_destroy(c->decoder);
    if (c->encoder)
        lib.encoder_destroy(c->encoder);
    for (int i = 0; i < c->nbrowser_fds; i++)
        close(c->browser_fds[i]);
    if (c->sip_fd >= 0)
        close(c->sip_fd);
    if (c->sip_rtcp_fd >= 0)
        close(c->sip_rtcp_fd);
    PyMem_RawFree(c->rec);
    PyMem_RawFree(c->play);
    PyMem_RawFree(c->said);
    PyMem_RawFree(c);
}

static int closed_error(Relay *r)
{
    if (r->closed || !r->calls) {
        PyErr_SetString(PyExc_ValueError, "the relay is closed");
        return 1;
    }
    return 0;
}

/* (host, port) -> a socket address of the family of `fd` (IPv4 mapped into IPv6 when needed). */
static int parse_address(PyObject *obj, int fd, address_t *out)
{
    const char *host;
    int port;
    if (!PyArg_ParseTuple(obj, "si", &host, &port))
        return -1;
    if (port < 1 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "port %d out of range", port);
        return -1;
    }
    struct sockaddr_storage local;
    socklen_t locallen = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &locallen) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (local.ss_family == AF_INET) {
        struct sockaddr_in *a = (void *)&out->addr;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        out->len = sizeof *a;
        if (inet_pton(AF_INET, host, &a->sin_addr) == 1)
            return 0;
    } else if (local.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (void *)&out->addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        out->len = sizeof *a;
        struct in_addr v4;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) == 1)
            return 0;
        if (inet_pton(AF_INET, host, &v4) == 1) {
            a->sin6_addr.s6_addr[10] = a->sin6_addr.s6_addr[11] = 0xff;
            memcpy(&a->sin6_addr.s6_addr[12], &v4, 4);
            return 0;
        }
    } else {
        PyErr_SetString(PyExc_ValueError, "not an IPv4 or IPv6 socket");
        return -1;
    }
    PyErr_Format(PyExc_ValueError, "%s is not an IP address of the socket's family", host);
    return -1;
}

static int make_srtp(void **session, int profile, const uint8_t *key, Py_ssize_t keylen, int inbound)
{
    Py_ssize_t want = profile == SRTP_PROFILE_AES128_CM_SHA1_80  ? 30
                      : profile == SRTP_PROFILE_AEAD_AES_128_GCM ? 28
                      : profile == SRTP_PROFILE_AEAD_AES_256_GCM ? 44
                                                                 : -1;
    if (want < 0 || keylen != want) {
        PyErr_Format(PyExc_ValueError, "SRTP profile %d needs a %zd-byte master key+salt, got %zd", profile,
                     want, keylen);
        return -1;
    }
    srtp_policy_t policy;
    memset(&policy, 0, sizeof policy);
    policy.ssrc.type = inbound ? SSRC_ANY_INBOUND : SSRC_ANY_OUTBOUND;
    policy.key = (unsigned char *)key;
    policy.window_size = 1024;
    int status = lib.policy_rtp(&policy.rtp, profile);
    if (status == SRTP_OK)
        status = lib.policy_rtcp(&policy.rtcp, profile);
    if (status == SRTP_OK)
        status = lib.srtp_create(session, &policy);
    if (status != SRTP_OK) {
        *session = NULL;
        PyErr_Format(PyExc_ValueError, "SRTP profile %d unusable (libsrtp status %d)", profile, status);
        return -1;
    }
    return 0;
}

/* aiortc sent SRTCP under our SSRC before the hand-off: the browser's replay check takes only later
 * indices, so the relay's first report must go on from aiortc's last. libsrtp has no setter for the
 * SRTCP index, so `count` throw-away packets advance it. */
static int skip_srtcp_indices(void *session, uint32_t ssrc, unsigned int count)
{
    uint8_t scratch[8 + SRTP_MAX_TRAILER_LEN];
    for (unsigned int i = 0; i < count; i++) {
        int len = 8;
        scratch[0] = 0x80, scratch[1] = 201, scratch[2] = 0, scratch[3] = 1; /* an empty RR */
        scratch[4] = (uint8_t)(ssrc >> 24), scratch[5] = (uint8_t)(ssrc >> 16);
        scratch[6] = (uint8_t)(ssrc >> 8), scratch[7] = (uint8_t)ssrc;
        int status = lib.protect_rtcp(session, scratch, &len);
        if (status != SRTP_OK) {
            PyErr_Format(PyExc_ValueError, "cannot advance the SRTCP index (libsrtp status %d)", status);
            return -1;
        }
    }
    return 0;
}

static int make_codecs(call_t *c, int bitrate, int complexity)
{
    int err = 0;
    c->decoder = lib.decoder_create(8000, 1, &err);
    if (!c->decoder || err) {
        PyErr_Format(PyExc_RuntimeError, "opus_decoder_create failed (%d)", err);
        return -1;
    }
    c->encoder = lib.encoder_create(8000, 1, OPUS_APPLICATION_VOIP, &err);
    if (!c->encoder || err) {
        PyErr_Format(PyExc_RuntimeError, "opus_encoder_create failed (%d)", err);
        return -1;
    }
    if (opus_voice_settings(lib.encoder_ctl, c->encoder, bitrate, complexity)) {
        PyErr_Format(PyExc_ValueError, "Opus rejected bitrate %d or complexity %d", bitrate, complexity);
        return -1;
    }
    return 0;
}

static int watch(Relay *r, int fd, uint64_t token, int op)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = token};
    return epoll_ctl(r->epfd, op, fd, &ev);
}

static void unwatch(Relay *r, call_t *c)
{
    for (int i = 0; i < c->nbrowser_fds; i++)
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, c->browser_fds[i], NULL);
    int fds[] = {c->sip_fd, c->sip_rtcp_fd};
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            epoll_ctl(r->epfd, EPOLL_CTL_DEL, fds[i], NULL);
    if (c->room && --c->room->members == 0)
        c->room->id = 0; /* the last one left: the slot is free */
    c->room = NULL;
}

/* The browser leg's other sockets (a sequence of fds) after `fds[0]`; ValueError if too many or not fds. */
static int browser_other_fds(PyObject *seq, int *fds, int *n)
{
    PyObject *fast = PySequence_Fast(seq, "browser_other_fds must be a sequence of file descriptors");
    if (!fast)
        return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    int status = 0;
    if (count && *n == 0) {
        PyErr_SetString(PyExc_ValueError, "browser_other_fds without browser_fd");
        status = -1;
    } else if (count > MAX_BROWSER_SOCKETS - 1) {
        PyErr_Format(PyExc_ValueError, "a call's browser leg reads at most %d sockets", MAX_BROWSER_SOCKETS);
        status = -1;
    }
    for (Py_ssize_t i = 0; status == 0 && i < count; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (fd < 0 || fd > INT32_MAX) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "%ld is not a file descriptor", fd);
            status = -1;
        } else {
            fds[(*n)++] = (int)fd;
        }
    }
    Py_DECREF(fast);
    return status;
}

/* Room `id` with one more participant (a free slot, its clock started, for its first); NULL when full. */
static room_t *room_join(Relay *r, uint32_t id)
{
    room_t *free_slot = NULL;
    for (int i = 0; i < r->max_calls; i++) {
        room_t *room = &r->rooms[i];
        if (room->id == id) {
            if (room->members >= MIX_MAX)
                return NULL;
            room->members++;
            return room;
        }
        if (!room->id && !free_slot)
            free_slot = room;
    }
    if (!free_slot) /* cannot be: every room has a member, and this call's slot was free */
        return NULL;
    *free_slot = (room_t){.id = id, .members = 1, .start = monotonic_now(), .done = 0};
    return free_slot;
}

static PyObject *relay_add_call(Relay *r, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"browser_fd", "browser_remote", "srtp_profile", "srtp_rx_key", "srtp_tx_key",
                               "opus_pt", "browser_ssrc", "browser_seq", "browser_timestamp", "sip_fd",
                               "sip_remote", "sip_pt", "sip_ssrc", "telephone_event_pt", "send", "receive",
                               "opus_bitrate", "opus_complexity", "sip_rtcp_fd", "sip_rtcp_remote",
                               "srtcp_index", "cname", "rtcp_interval", "room", "browser_other_fds", NULL};
    int browser_fd, profile, opus_pt, sip_fd, sip_pt, dtmf_pt, send, receive, bitrate, complexity;
    int sip_rtcp_fd = -1;
    unsigned int browser_ssrc, sip_ssrc, browser_seq, browser_ts, srtcp_index = 0, room = 0;
    PyObject *browser_remote, *sip_remote, *sip_rtcp_remote = Py_None, *other_fds = NULL;
    const char *rx_key, *tx_key, *cname = NULL;
    Py_ssize_t rx_len, tx_len, cname_len = 0;
    double rtcp_interval = 5.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOiy#y#iIIIiOiIippii|iOIz#dIO", keywords, &browser_fd,
                                     &browser_remote, &profile, &rx_key, &rx_len, &tx_key, &tx_len, &opus_pt,
                                     &browser_ssrc, &browser_seq, &browser_ts, &sip_fd, &sip_remote, &sip_pt,
                                     &sip_ssrc, &dtmf_pt, &send, &receive, &bitrate, &complexity, &sip_rtcp_fd,
                                     &sip_rtcp_remote, &srtcp_index, &cname, &cname_len, &rtcp_interval, &room,
                                     &other_fds))
        return NULL;
    if (closed_error(r))
        return NULL;
    if (opus_pt < 96 || opus_pt > 127 || (sip_pt != 0 && sip_pt != 8) ||
        (dtmf_pt != -1 && (dtmf_pt < 96 || dtmf_pt > 127))) {
        PyErr_SetString(PyExc_ValueError, "payload types: Opus 96..127, SIP 0 or 8, telephone-event -1 or 96..127");
        return NULL;
    }
    if ((sip_rtcp_fd >= 0) != (sip_rtcp_remote != Py_None) || srtcp_index > MAX_SRTCP_INDEX ||
        (cname && (cname_len < 1 || cname_len > RTCP_CNAME_MAX)) || !(rtcp_interval >= 0.01 && rtcp_interval <= 3600)) {
        PyErr_Format(PyExc_ValueError, "RTCP: sip_rtcp_fd and sip_rtcp_remote go together, srtcp_index is at most "
                     "%u, a cname 1..%d bytes, rtcp_interval 0.01..3600 s", MAX_SRTCP_INDEX, RTCP_CNAME_MAX);
        return NULL;
    }
    int browser = browser_fd >= 0, sip = sip_fd >= 0;
    if (room ? browser == sip : !(browser && sip)) {
        PyErr_SetString(PyExc_ValueError, "a call has both legs; a room's participant (room > 0) one, the other's fd -1");
        return NULL;
    }
    if (!sip && sip_rtcp_fd >= 0) {
        PyErr_SetString(PyExc_ValueError, "sip_rtcp_fd without sip_fd");
        return NULL;
    }
    int browser_fds[MAX_BROWSER_SOCKETS] = {browser_fd}, nbrowser_fds = browser;
    if (other_fds && other_fds != Py_None && browser_other_fds(other_fds, browser_fds, &nbrowser_fds) < 0)
        return NULL;
    call_t *c = PyMem_RawCalloc(1, sizeof *c);
    if (!c)
        return PyErr_NoMemory();
    c->browser_fd = c->sip_fd = c->sip_rtcp_fd = -1;
    if ((browser && (parse_address(browser_remote, browser_fd, &c->browser_remote) < 0 ||
                     make_srtp(&c->srtp_rx, profile, (const uint8_t *)rx_key, rx_len, 1) < 0 ||
                     make_srtp(&c->srtp_tx, profile, (const uint8_t *)tx_key, tx_len, 0) < 0 ||
                     skip_srtcp_indices(c->srtp_tx, browser_ssrc, srtcp_index) < 0 ||
                     make_codecs(c, bitrate, complexity) < 0)) ||
        (sip && parse_address(sip_remote, sip_fd, &c->sip_remote) < 0) ||
        (sip_rtcp_fd >= 0 && parse_address(sip_rtcp_remote, sip_rtcp_fd, &c->sip_rtcp_remote) < 0)) {
        free_call(c);
        return NULL;
    }
    if (room && !(c->said = PyMem_RawCalloc(1, sizeof *c->said))) {
        free_call(c);
        return PyErr_NoMemory();
    }
    int duplicated = 1;
    for (int i = 0; i < nbrowser_fds && duplicated; i++) {
        c->browser_fds[i] = fcntl(browser_fds[i], F_DUPFD_CLOEXEC, 0);
        duplicated = c->browser_fds[i] >= 0;
        c->nbrowser_fds += duplicated;
    }
    c->browser_fd = browser ? c->browser_fds[0] : -1;
    c->sip_fd = sip ? fcntl(sip_fd, F_DUPFD_CLOEXEC, 0) : -1;
    c->sip_rtcp_fd = sip_rtcp_fd >= 0 ? fcntl(sip_rtcp_fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (!duplicated || (sip && c->sip_fd < 0) || (sip_rtcp_fd >= 0 && c->sip_rtcp_fd < 0)) {
        PyErr_SetFromErrno(PyExc_OSError);
        free_call(c);
        return NULL;
    }
    uint32_t random[6] = {0};
    if (getrandom(random, sizeof random, 0) != (ssize_t)sizeof random) {
        PyErr_SetFromErrno(PyExc_OSError);
        free_call(c);
        return NULL;
    }
    char random_cname[17];
    if (!cname) { /* RFC 7022: a random CNAME for the session */
        snprintf(random_cname, sizeof random_cname, "%08x%08x", random[2], random[3]);
        cname = random_cname;
        cname_len = 16;
    }
    rtcp_init(&c->browser_rtcp, browser_ssrc, OPUS_CLOCK, cname, (size_t)cname_len);
    rtcp_init(&c->sip_rtcp, sip_ssrc, G711_CLOCK, cname, (size_t)cname_len);
    c->rtcp_interval = rtcp_interval;
    c->rng = (uint64_t)random[4] << 32 | random[5] | 1;
    c->opus_pt = (uint8_t)opus_pt;
    c->browser_ssrc = browser_ssrc;
    c->browser_seq = (uint16_t)browser_seq;
    c->browser_ts = browser_ts;
    c->browser_marker = c->sip_marker = 1;
    c->last_frame = FRAME_8K;
    c->sip_pt = (uint8_t)sip_pt;
    c->sip_ssrc = sip_ssrc;
    c->sip_seq = (uint16_t)random[0];
    c->dtmf_event = -1;
    c->sip_ts = random[1];
    c->dtmf_pt = dtmf_pt;
    c->sip_send = send;
    c->sip_receive = receive;
    relay_lock(r);
    int slot = 0;
    while (slot < r->max_calls && r->calls[slot])
        slot++;
    if (slot == r->max_calls) {
        pthread_mutex_unlock(&r->lock);
        free_call(c);
        PyErr_Format(PyExc_RuntimeError, "the relay carries its maximum of %d calls", r->max_calls);
        return NULL;
    }
    if (room && !(c->room = room_join(r, room))) {
        pthread_mutex_unlock(&r->lock);
        free_call(c);
        PyErr_Format(PyExc_RuntimeError, "room %u has its maximum of %d participants", room, MIX_MAX);
        return NULL;
    }
    c->handle = (uint64_t)(++r->generation) << 16 | (uint64_t)slot;
    c->last_browser_media = c->last_sip_media = monotonic_now();
    c->next_report = c->last_browser_media + rtcp_interval * (0.5 + random_unit(c)) / 2; /* RFC 3550 6.2: half at first */
    int watched = 1;
    for (int i = 0; i < c->nbrowser_fds && watched; i++)
        watched = watch(r, c->browser_fds[i], c->handle << LEG_BITS | (uint64_t)(LEG_BROWSER + i), EPOLL_CTL_ADD) == 0;
    if (!watched || (sip && watch(r, c->sip_fd, c->handle << LEG_BITS | LEG_SIP, EPOLL_CTL_ADD) < 0) ||
        (c->sip_rtcp_fd >= 0 && watch(r, c->sip_rtcp_fd, c->handle << LEG_BITS | LEG_SIP_RTCP, EPOLL_CTL_ADD) < 0)) {
        PyErr_SetFromErrno(PyExc_OSError);
        unwatch(r, c);
        pthread_mutex_unlock(&r->lock);
        free_call(c);
        return NULL;
    }
    r->calls[slot] = c;
    r->live_calls++;
    pthread_mutex_unlock(&r->lock);
    uint64_t one = 1;
    if (write(r->wakefd, &one, sizeof one) < 0) { /* cannot fail: the counter is far from overflow */
    }
    return PyLong_FromUnsignedLongLong(c->handle);
}

static PyObject *relay_update_sip(Relay *r, PyObject *args)
{
    unsigned long long handle;
    PyObject *remote, *rtcp_remote = Py_None;
    int pt, send, receive;
    if (!PyArg_ParseTuple(args, "KOipp|O", &handle, &remote, &pt, &send, &receive, &rtcp_remote))
        return NULL;
    if (closed_error(r))
        return NULL;
    if (pt != 0 && pt != 8) {
        PyErr_SetString(PyExc_ValueError, "SIP payload type must be 0 (PCMU) or 8 (PCMA)");
        return NULL;
    }
    relay_lock(r);
    call_t *c = lookup(r, handle);
    address_t address, rtcp_address;
    int ok = c && parse_address(remote, c->sip_fd, &address) == 0 &&
             (rtcp_remote == Py_None || c->sip_rtcp_fd < 0 ||
              parse_address(rtcp_remote, c->sip_rtcp_fd, &rtcp_address) == 0);
    if (ok) {
        if (rtcp_remote != Py_None && c->sip_rtcp_fd >= 0)
            c->sip_rtcp_remote = rtcp_address;
        if (!same_address(&address, &c->sip_remote.addr) || pt != c->sip_pt) { /* a new stream */
            c->sip_started = 0;
            c->nacc = 0;
        }
        c->sip_remote = address;
        c->sip_pt = (uint8_t)pt;
        c->sip_send = send;
        c->sip_receive = receive;
    }
    pthread_mutex_unlock(&r->lock);
    if (!c && !PyErr_Occurred())
        PyErr_Format(PyExc_KeyError, "no call %llu", handle);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *relay_send_dtmf(Relay *r, PyObject *args)
{
    unsigned long long handle;
    const uint8_t *events;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "Ky#", &handle, &events, &n))
        return NULL;
    if (closed_error(r))
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (events[i] > 15) {
            PyErr_SetString(PyExc_ValueError, "DTMF events are 0..15");
            return NULL;
        }
    }
    relay_lock(r);
    call_t *c = lookup(r, handle);
    int sent = 0;
    if (c && c->dtmf_pt >= 0 && c->dtmf_npending + n <= DTMF_PENDING) {
        memcpy(c->dtmf_pending + c->dtmf_npending, events, (size_t)n);
        c->dtmf_npending += (int)n;
        sent = 1;
    }
    pthread_mutex_unlock(&r->lock);
    if (!c)
        return PyErr_Format(PyExc_KeyError, "no call %llu", handle);
    return PyBool_FromLong(sent);
}

static PyObject *relay_remove_call(Relay *r, PyObject *args)
{
    unsigned long long handle;
    if (!PyArg_ParseTuple(args, "K", &handle))
        return NULL;
    if (r->closed || !r->calls)
        Py_RETURN_FALSE;
    relay_lock(r);
    call_t *c = lookup(r, handle);
    if (c) {
        unwatch(r, c);
        r->calls[handle & 0xffff] = NULL;
        r->live_calls--;
    }
    pthread_mutex_unlock(&r->lock);
    if (!c)
        Py_RETURN_FALSE;
    free_call(c);
    Py_RETURN_TRUE;
}

/* The ring's stereo samples as bytes, emptying it (the relay's lock is held). */
static PyObject *take_recorded(recording_t *rec)
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)rec->count * 2 * (Py_ssize_t)sizeof(int16_t));
    if (!out)
        return NULL;
    char *dst = PyBytes_AS_STRING(out);
    int first = rec->count < REC_RING - rec->head ? rec->count : REC_RING - rec->head;
    memcpy(dst, rec->ring + 2 * rec->head, (size_t)first * 2 * sizeof(int16_t));
    memcpy(dst + (size_t)first * 2 * sizeof(int16_t), rec->ring, (size_t)(rec->count - first) * 2 * sizeof(int16_t));
    rec->head = (rec->head + rec->count) % REC_RING;
    rec->count = 0;
    return out;
}

static PyObject *relay_record(Relay *r, PyObject *args)
{
    unsigned long long handle;
    int on;
    if (!PyArg_ParseTuple(args, "Kp", &handle, &on))
        return NULL;
    if (closed_error(r))
        return NULL;
    recording_t *fresh = on ? PyMem_RawCalloc(1, sizeof *fresh) : NULL, *old = NULL;
    if (on && !fresh)
        return PyErr_NoMemory();
    PyObject *rest = NULL;
    relay_lock(r);
    call_t *c = lookup(r, handle);
    if (c) {
        old = c->rec;
        rest = old ? take_recorded(old) : PyBytes_FromStringAndSize(NULL, 0);
        if (rest) {
            if (fresh)
                fresh->start = monotonic_now();
            c->rec = fresh;
            fresh = NULL;
        } else {
            old = NULL;
        }
    }
    pthread_mutex_unlock(&r->lock);
    PyMem_RawFree(fresh);
    PyMem_RawFree(old);
    if (!c)
        return PyErr_Format(PyExc_KeyError, "no call %llu", handle);
    return rest;
}

static PyObject *relay_recorded(Relay *r, PyObject *args)
{
    unsigned long long handle;
    if (!PyArg_ParseTuple(args, "K", &handle))
        return NULL;
    if (closed_error(r))
        return NULL;
    relay_lock(r);
    call_t *c = lookup(r, handle);
    PyObject *out = !c ? NULL : c->rec ? take_recorded(c->rec) : PyBytes_FromStringAndSize(NULL, 0);
    pthread_mutex_unlock(&r->lock);
    if (!c)
        return PyErr_Format(PyExc_KeyError, "no call %llu", handle);
    return out;
}

static PyObject *relay_play(Relay *r, PyObject *args)
{
    unsigned long long handle;
    const char *pcm;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "Ky#", &handle, &pcm, &len))
        return NULL;
    if (closed_error(r))
        return NULL;
    if (len % 2 || len / 2 > PLAY_MAX) {
        PyErr_Format(PyExc_ValueError, "play takes 8 kHz s16 samples, at most %d", PLAY_MAX);
        return NULL;
    }
    int16_t *fresh = PyMem_RawMalloc(len ? (size_t)len : 1), *old = NULL;
    if (!fresh)
        return PyErr_NoMemory();
    memcpy(fresh, pcm, (size_t)len);
    relay_lock(r);
    call_t *c = lookup(r, handle);
    if (c) {
        old = c->play;
        c->play = fresh;
        c->play_len = (int)(len / 2);
        c->play_pos = 0;
        fresh = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    PyMem_RawFree(fresh);
    PyMem_RawFree(old);
    if (!c)
        return PyErr_Format(PyExc_KeyError, "no call %llu", handle);
    Py_RETURN_NONE;
}

/* d[prefix + name] = value, taking the reference; -1 (with the error set) if value is NULL or d refuses. */
static int put_item(PyObject *d, const char *prefix, const char *name, PyObject *value)
{
    char key[64];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    int status = value ? PyDict_SetItemString(d, key, value) : -1;
    Py_XDECREF(value);
    return status;
}

static PyObject *ms_or_none(int known, double ticks, uint32_t clock_rate)
{
    return known ? PyFloat_FromDouble(ticks * 1000.0 / clock_rate) : Py_NewRef(Py_None);
}

/* One leg's RTCP figures: what arrives (measured here) and what the far end reports about what we send
 * (None until its first report block, the round trip until a block echoes one of our SRs). */
static int put_leg(PyObject *d, const char *leg, const rtcp_t *s)
{
    uint32_t expected;
    int64_t lost = rtcp_lost(s, &expected);
    int remote = s->have_remote;
    if (put_item(d, leg, "jitter_ms", ms_or_none(1, s->jitter, s->clock_rate)) < 0 ||
        put_item(d, leg, "lost", PyLong_FromLongLong(lost)) < 0 ||
        put_item(d, leg, "expected", PyLong_FromUnsignedLong(expected)) < 0 ||
        put_item(d, leg, "fraction_lost", PyFloat_FromDouble(s->fraction_lost / 256.0)) < 0 ||
        put_item(d, leg, "rtt_ms", ms_or_none(s->have_rtt, s->rtt, 1)) < 0 ||
        put_item(d, leg, "remote_jitter_ms", ms_or_none(remote, s->remote_jitter, s->clock_rate)) < 0 ||
        put_item(d, leg, "remote_lost", remote ? PyLong_FromLong(s->remote_lost) : Py_NewRef(Py_None)) < 0 ||
        put_item(d, leg, "remote_fraction_lost",
                 remote ? PyFloat_FromDouble(s->remote_fraction_lost / 256.0) : Py_NewRef(Py_None)) < 0)
        return -1;
    return 0;
}

static PyObject *relay_stats(Relay *r, PyObject *args)
{
    unsigned long long handle;
    if (!PyArg_ParseTuple(args, "K", &handle))
        return NULL;
    if (closed_error(r))
        return NULL;
    uint64_t stat[ST_COUNT];
    double last_browser = 0, last_sip = 0;
    rtcp_t legs[2];
    relay_lock(r);
    call_t *c = lookup(r, handle);
    if (c) {
        memcpy(stat, c->stat, sizeof stat);
        last_browser = c->last_browser_media;
        last_sip = c->last_sip_media;
        legs[0] = c->browser_rtcp;
        legs[1] = c->sip_rtcp;
    }
    pthread_mutex_unlock(&r->lock);
    if (!c)
        return PyErr_Format(PyExc_KeyError, "no call %llu", handle);
    PyObject *d = PyDict_New();
    for (int i = 0; d && i < ST_COUNT; i++)
        if (put_item(d, "", stat_names[i], PyLong_FromUnsignedLongLong(stat[i])) < 0)
            Py_CLEAR(d);
    if (d && (put_item(d, "", "last_browser_media", PyFloat_FromDouble(last_browser)) < 0 ||
              put_item(d, "", "last_sip_media", PyFloat_FromDouble(last_sip)) < 0 ||
              put_leg(d, "browser_", &legs[0]) < 0 || put_leg(d, "sip_", &legs[1]) < 0))
        Py_CLEAR(d);
    return d;
}

static PyObject *address_tuple(const address_t *a)
{
    char host[INET6_ADDRSTRLEN] = "";
    int port = 0;
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)&a->addr;
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
        port = ntohs(s->sin_port);
    } else if (a->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)&a->addr;
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
        port = ntohs(s->sin6_port);
    }
    return Py_BuildValue("(si)", host, port);
}

static PyObject *relay_drain(Relay *r, PyObject *unused)
{
    if (closed_error(r))
        return NULL;
    uint64_t count;
    if (read(r->eventfd, &count, sizeof count) < 0 && errno != EAGAIN)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *list = PyList_New(0);
    relay_lock(r);
    r->queue_signalled = 0;
    while (list && r->queue_count > 0) {
        foreign_t *f = &r->queue[r->queue_head];
        PyObject *item = Py_BuildValue("(Kiy#Ni)", (unsigned long long)f->handle, f->kind, f->data,
                                       (Py_ssize_t)f->len, address_tuple(&f->source), f->socket);
        if (!item || PyList_Append(list, item) < 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
        r->queue_head = (r->queue_head + 1) % r->queue_size;
        r->queue_count--;
    }
    pthread_mutex_unlock(&r->lock);
    return list;
}

static PyObject *relay_fileno(Relay *r, PyObject *unused)
{
    if (closed_error(r))
        return NULL;
    return PyLong_FromLong(r->eventfd);
}

static void relay_shutdown(Relay *r)
{
    if (r->closed)
        return;
    r->closed = 1;
    if (r->thread_started) {
        pthread_mutex_lock(&r->lock);
        r->stop = 1;
        pthread_mutex_unlock(&r->lock);
        uint64_t one = 1;
        if (write(r->wakefd, &one, sizeof one) < 0) { /* cannot fail: the counter is far from overflow */
        }
        Py_BEGIN_ALLOW_THREADS
        pthread_join(r->thread, NULL);
        Py_END_ALLOW_THREADS
        r->thread_started = 0;
    }
    for (int i = 0; r->calls && i < r->max_calls; i++)
        if (r->calls[i]) {
            free_call(r->calls[i]);
            r->calls[i] = NULL;
        }
    int *fds[] = {&r->epfd, &r->eventfd, &r->wakefd};
    for (size_t i = 0; i < 3; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    PyMem_Free(r->calls);
    PyMem_Free(r->rooms);
    PyMem_Free(r->queue);
    PyMem_Free(r->rx);
    PyMem_Free(r->tx);
    r->calls = NULL;
    r->rooms = NULL;
    r->queue = NULL;
    r->rx = NULL;
    r->tx = NULL;
}

static PyObject *relay_close(Relay *r, PyObject *unused)
{
    relay_shutdown(r);
    Py_RETURN_NONE;
}

static PyObject *relay_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Relay *r = (Relay *)type->tp_alloc(type, 0);
    if (r)
        r->epfd = r->eventfd = r->wakefd = -1;
    return (PyObject *)r;
}

static void relay_dealloc(Relay *r)
{
    relay_shutdown(r);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyMethodDef relay_methods[] = {
    {"add_call", (PyCFunction)(void (*)(void))relay_add_call, METH_VARARGS | METH_KEYWORDS,
     "Start carrying a call (or, with room > 0, a room's participant with one leg); returns its handle. "
     "The fds are duplicated, never closed."},
    {"update_sip", (PyCFunction)relay_update_sip, METH_VARARGS,
     "update_sip(handle, (host, port), payload_type, send, receive, rtcp_remote=None): re-INVITE or hold."},
    {"send_dtmf", (PyCFunction)relay_send_dtmf, METH_VARARGS,
     "send_dtmf(handle, events): RFC 4733 events 0..15 towards SIP; False without telephone-event or room."},
    {"remove_call", (PyCFunction)relay_remove_call, METH_VARARGS, "Stop carrying a call; False if unknown."},
    {"record", (PyCFunction)relay_record, METH_VARARGS,
     "record(handle, on): start (again) or stop recording; returns the stereo samples still queued."},
    {"recorded", (PyCFunction)relay_recorded, METH_VARARGS,
     "recorded(handle): the recording's stereo s16 8 kHz samples so far (browser left, SIP right)."},
    {"play", (PyCFunction)relay_play, METH_VARARGS, "play(handle, pcm): mix 8 kHz s16 samples into what goes to SIP."},
    {"stats", (PyCFunction)relay_stats, METH_VARARGS,
     "The call's counters, last-media times and each leg's RTCP figures (browser_*, sip_*)."},
    {"drain", (PyCFunction)relay_drain, METH_NOARGS,
     "Datagrams for Python: [(handle, kind, bytes, (host, port), socket)]; kind 0 STUN/DTLS (socket: the "
     "browser socket's index), 1 telephone-event, 2 the browser's media moved (to that socket and address)."},
    {"fileno", (PyCFunction)relay_fileno, METH_NOARGS, "The eventfd readable while drain() has work."},
    {"close", (PyCFunction)relay_close, METH_NOARGS, "Stop the worker and free every call; idempotent."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RelayType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway._mediarelay.Relay",
    .tp_basicsize = sizeof(Relay),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Relay(max_calls=64, queue_size=256): one worker thread carrying calls' media.",
    .tp_new = relay_new,
    .tp_init = (initproc)relay_init,
    .tp_dealloc = (destructor)relay_dealloc,
    .tp_methods = relay_methods,
};

static PyMethodDef module_methods[] = {
    {"init", mr_init, METH_VARARGS, "init(opus_path, srtp_path): dlopen libopus and libsrtp 2."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mediarelay", "Native SRTP/Opus <-> RTP/G.711 media relay.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__mediarelay(void)
{
    build_g711_tables();
    if (PyType_Ready(&RelayType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&RelayType);
    if (PyModule_AddObject(m, "Relay", (PyObject *)&RelayType) < 0 ||
        PyModule_AddIntConstant(m, "KIND_BROWSER", KIND_BROWSER) < 0 ||
        PyModule_AddIntConstant(m, "KIND_TELEPHONE_EVENT", KIND_TELEPHONE_EVENT) < 0 ||
        PyModule_AddIntConstant(m, "KIND_MOVED", KIND_MOVED) < 0 ||
        PyModule_AddIntConstant(m, "REORDER_DEPTH", REORDER_DEPTH) < 0) {
        Py_DECREF(&RelayType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
