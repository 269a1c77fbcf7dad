/*
 * perfkit.trace._scan: a single-pass scanner from Kineto traceEvents JSON to columns.
 *
 * scan(buffer) takes the bytes of a JSON array of event objects ("[{...},{...}]"),
 * or of a run of event objects separated by commas ("{...},{...},"), and returns
 * plain bytes columns (no Python object per event): for timed ("X") events the
 * fields perfkit uses, for "[memory]" instants the allocator fields,
 * for "M" metadata events the names, plus a table of the distinct strings.
 *
 * It understands exactly the JSON it needs to. Anything unexpected (malformed
 * JSON, a field of an unexpected type) raises ValueError, and the caller falls
 * back to the general msgspec decoder for that chunk, so results never depend
 * on which path ran.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static int buf_grow(Buf *b, size_t n) {
    if (b->len + n <= b->cap) return 0;
    size_t nc = b->cap ? b->cap * 2 : 65536;
    while (nc < b->len + n) nc *= 2;
    char *p = (char *)realloc(b->data, nc);
    if (!p) return -1;
    b->data = p;
    b->cap = nc;
    return 0;
}

#define PUSH(b, x)                                                   \
    do {                                                             \
        if (buf_grow(&(b), sizeof(x)) < 0) goto nomem;               \
        memcpy((b).data + (b).len, &(x), sizeof(x));                 \
        (b).len += sizeof(x);                                        \
    } while (0)

/* ------------------------------------------------------------------ interning */

typedef struct {
    uint64_t hash;
    int32_t id;
    size_t off, len;
} Slot;

typedef struct {
    Slot *slots;
    size_t cap, count;
    Buf arena;     /* raw bytes of every distinct string */
    Buf offsets;   /* int64 start offset per id */
    Buf lengths;   /* int64 length per id */
    Buf escaped;   /* int8: 1 when the raw string holds a backslash escape */
} Intern;

/* 8 bytes per round (names are long: kernel signatures run to hundreds of bytes) */
static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, n - i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    return h;
}

static int intern_init(Intern *t) {
    memset(t, 0, sizeof(*t));
    t->cap = 1024;
    t->slots = (Slot *)calloc(t->cap, sizeof(Slot));
    if (!t->slots) return -1;
    for (size_t i = 0; i < t->cap; i++) t->slots[i].id = -1;
    return 0;
}

static void intern_free(Intern *t) {
    free(t->slots);
    free(t->arena.data);
    free(t->offsets.data);
    free(t->lengths.data);
    free(t->escaped.data);
}

static int intern_rehash(Intern *t) {
    size_t nc = t->cap * 2;
    Slot *ns = (Slot *)calloc(nc, sizeof(Slot));
    if (!ns) return -1;
    for (size_t i = 0; i < nc; i++) ns[i].id = -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].id < 0) continue;
        size_t j = t->slots[i].hash & (nc - 1);
        while (ns[j].id >= 0) j = (j + 1) & (nc - 1);
        ns[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns;
    t->cap = nc;
    return 0;
}

/* id of the string s[0:n] (raw JSON content between the quotes); -2 on no memory */
static int32_t intern(Intern *t, const char *s, size_t n, int esc) {
    uint64_t h = fnv(s, n);
    size_t j = h & (t->cap - 1);
    while (t->slots[j].id >= 0) {
        Slot *sl = &t->slots[j];
        if (sl->hash == h && sl->len == n && memcmp(t->arena.data + sl->off, s, n) == 0) return sl->id;
        j = (j + 1) & (t->cap - 1);
    }
    int32_t id = (int32_t)t->count;
    if (buf_grow(&t->arena, n + 1) < 0) return -2;
    size_t off = t->arena.len;
    memcpy(t->arena.data + off, s, n);
    t->arena.len += n;
    int64_t o = (int64_t)off, l = (int64_t)n;
    int8_t e = (int8_t)esc;
    if (buf_grow(&t->offsets, 8) < 0 || buf_grow(&t->lengths, 8) < 0 || buf_grow(&t->escaped, 1) < 0) return -2;
    memcpy(t->offsets.data + t->offsets.len, &o, 8);
    t->offsets.len += 8;
    memcpy(t->lengths.data + t->lengths.len, &l, 8);
    t->lengths.len += 8;
    t->escaped.data[t->escaped.len++] = e;
    t->slots[j].hash = h;
    t->slots[j].id = id;
    t->slots[j].off = off;
    t->slots[j].len = n;
    t->count++;
    if (t->count * 2 > t->cap && intern_rehash(t) < 0) return -2;
    return id;
}

/* ------------------------------------------------------------------ lexing */

/* Every read below is guarded by p < end: the scanner is safe on any buffer (it is
 * fuzzed under AddressSanitizer by scripts/fuzz_scanner.py, and tests/test_reader_hostile.py
 * runs it on buffers that end right before an unreadable page). */

/* Nesting deeper than this inside one event is malformed (the C stack stays small). */
#define MAX_DEPTH 256

typedef struct {
    const char *p, *end, *start;
    const char *err;
    int unsupported; /* 1: valid JSON the scanner leaves to the general decoder (not malformed) */
} Lex;

static inline void ws(Lex *L) {
    if (L->p < L->end && (unsigned char)*L->p > ' ') return; /* compact JSON: no whitespace at all */
    while (L->p < L->end) {
        char c = *L->p;
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') L->p++;
        else break;
    }
}

/* first '"', '\\' or control byte (< 0x20) in [p, end), or end: 16 bytes per step where SSE2 exists */
static inline const char *find_quote_or_backslash(const char *p, const char *end) {
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1F);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash));
        hit = _mm_or_si128(hit, _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl)); /* v <= 0x1F, unsigned */
        int mask = _mm_movemask_epi8(hit);
        if (mask) return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
    return p;
}

static inline int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* \uXXXX at q (q[0] == '\\', q[1] == 'u'), q + 6 <= end checked by the caller: the code unit or -1 */
static inline int u_escape(const char *q, const char *end) {
    if (end - q < 6) return -1;
    int v = 0;
    for (int i = 2; i < 6; i++) {
        int h = hexval(q[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* at a quote: sets s and n to the raw content, esc if a backslash was seen; moves past the closing quote.
 * Validates as JSON requires: escapes are one of \" \\ \/ \b \f \n \r \t \uXXXX (a high surrogate
 * followed by a low one, never a lone surrogate), no raw control byte. UTF-8 is not checked here:
 * invalid sequences in the strings perfkit keeps become U+FFFD when decoded (decode.py). */
static int lex_string(Lex *L, const char **s, size_t *n, int *esc) {
    if (L->p >= L->end || *L->p != '"') { L->err = "expected a string"; return -1; }
    const char *begin = ++L->p;
    const char *q = begin;
    int e = 0;
    for (;;) {
        q = find_quote_or_backslash(q, L->end);
        if (q >= L->end) break;
        if (*q == '"') {
            *s = begin;
            *n = (size_t)(q - begin);
            *esc = e;
            L->p = q + 1;
            return 0;
        }
        if (*q != '\\') { L->p = q; L->err = "control character in a string"; return -1; }
        e = 1;
        if (q + 1 >= L->end) break;
        switch (q[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            q += 2;
            break;
        case 'u': {
            int u = u_escape(q, L->end);
            if (u < 0) { L->p = q; L->err = "bad \\u escape"; return -1; }
            if (u >= 0xDC00 && u <= 0xDFFF) { L->p = q; L->err = "lone low surrogate"; return -1; }
            if (u >= 0xD800 && u <= 0xDBFF) {
                int lo = (L->end - q >= 12 && q[6] == '\\' && q[7] == 'u') ? u_escape(q + 6, L->end) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) { L->p = q; L->err = "lone high surrogate"; return -1; }
                q += 12;
            } else {
                q += 6;
            }
            break;
        }
        default:
            L->p = q;
            L->err = "bad escape";
            return -1;
        }
    }
    L->p = L->end;
    L->err = "unterminated string";
    return -1;
}

/* Eight ASCII digits at p (p + 8 <= end) -> their value in *out; 0 if any byte is not a digit.
 * The SWAR method of simdjson / fast_float: three multiplications instead of eight steps. */
static inline int eight_digits(const char *p, uint64_t *out) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    if ((((v & 0xF0F0F0F0F0F0F0F0ULL) | (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4))) !=
        0x3333333333333333ULL)
        return 0;
    v -= 0x3030303030303030ULL;
    v = (v * 10) + (v >> 8);
    v = (((v & 0x000000FF000000FFULL) * 0x000F424000000064ULL) +
         (((v >> 16) & 0x000000FF000000FFULL) * 0x0000271000000001ULL)) >> 32;
    *out = (uint32_t)v;
    return 1;
#else
    (void)p; (void)out;
    return 0;
#endif
}

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The end of the JSON number token at p (RFC 8259 grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?),
 * or NULL if the bytes there are not one (a leading zero, "1.", "-", ".5", "1e"...). */
static const char *number_end(const char *p, const char *end) {
    const char *q = p;
    if (q < end && *q == '-') q++;
    if (q >= end || !is_digit(*q)) return NULL;
    if (*q == '0') {
        q++;
        if (q < end && is_digit(*q)) return NULL; /* leading zero */
    } else {
        while (q < end && is_digit(*q)) q++;
    }
    if (q < end && *q == '.') {
        q++;
        if (q >= end || !is_digit(*q)) return NULL;
        while (q < end && is_digit(*q)) q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < end && (*q == '+' || *q == '-')) q++;
        if (q >= end || !is_digit(*q)) return NULL;
        while (q < end && is_digit(*q)) q++;
    }
    return q;
}

/* strtod on [p, te) through a NUL-terminated copy: strtod must never read past the buffer */
static double strtod_bounded(const char *p, const char *te) {
    char local[128];
    size_t n = (size_t)(te - p);
    char *tmp = n < sizeof(local) ? local : (char *)malloc(n + 1);
    if (!tmp) return NAN; /* no memory: a value the callers reject */
    memcpy(tmp, p, n);
    tmp[n] = 0;
    double d = strtod(tmp, NULL); /* beyond double's range: +-HUGE_VAL (inf), as JSON decoders read it */
    if (tmp != local) free(tmp);
    return d;
}

/* number: kind 1 = integer (in *iv), 2 = real (in *dv); 0 = not a number (e.g. a string: left unread) */
static int lex_number(Lex *L, int64_t *iv, double *dv, int *kind) {
    ws(L);
    const char *p = L->p;
    if (p >= L->end) { L->err = "unexpected end"; return -1; }
    char c = *p;
    if (!(is_digit(c) || c == '-')) { *kind = 0; return 0; }
    const char *q = p;
    int neg = 0;
    if (*q == '-') { neg = 1; q++; }
    const char *first = q;
    uint64_t v = 0;
    int digits = 0;
    uint64_t eight;
    while (digits <= 11 && L->end - q >= 8 && eight_digits(q, &eight)) { /* timestamps: 10-16 digits */
        v = v * 100000000ULL + eight;
        digits += 8;
        q += 8;
    }
    while (q < L->end && is_digit(*q)) {
        if (digits < 19) v = v * 10 + (uint64_t)(*q - '0'); /* 19 digits fit in a uint64 */
        digits++;
        q++;
    }
    /* the rest of the JSON number grammar: no leading zero, digits after '.', and after 'e' */
    if (digits == 0 || (*first == '0' && digits > 1)) { L->err = "bad number"; return -1; }
    const char *te = q;
    if (te < L->end && *te == '.') {
        te++;
        if (te >= L->end || !is_digit(*te)) { L->err = "bad number"; return -1; }
        while (te < L->end && is_digit(*te)) te++;
    }
    if (te < L->end && (*te == 'e' || *te == 'E')) {
        te++;
        if (te < L->end && (*te == '+' || *te == '-')) te++;
        if (te >= L->end || !is_digit(*te)) { L->err = "bad number"; return -1; }
        while (te < L->end && is_digit(*te)) te++;
    }
    if (q < te && *q == '.' && digits <= 19 && v <= (uint64_t)INT64_MAX) {
        /* An integer written with a zero fraction (1669783704212433.0, as Python's
         * json writes floats): exactly the integer, which the int64 -> double
         * conversion rounds as strtod does (to nearest). Above 2^53 the general
         * fast path below cannot take it, and strtod is slow. */
        const char *f = q + 1;
        while (f < te && *f == '0') f++;
        int zeros = (int)(f - (q + 1));
        if (zeros > 0 && f == te) {
            double d = (double)(int64_t)v;
            *dv = neg ? -d : d;
            *kind = 2;
            L->p = te;
            return 0;
        }
    }
    if (q < te && *q == '.' && digits < 18) {
        /* Fast path for plain decimals (timestamps such as 1699999999999.123): when
         * the digits as an integer m are below 2^53 and there are at most 22 of
         * them after the point, m / 10^k is exactly what strtod returns (one
         * correctly rounded division of two exact doubles). */
        static const double pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                         1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
        const char *f = q + 1;
        uint64_t m = v;
        int frac = 0;
        while (frac <= 11 && te - f >= 8 && eight_digits(f, &eight)) {
            m = m * 100000000ULL + eight; /* may wrap when digits + frac > 19: then unused */
            frac += 8;
            f += 8;
        }
        while (f < te && is_digit(*f) && frac < 19) {
            m = m * 10 + (uint64_t)(*f - '0');
            frac++;
            f++;
        }
        if (frac > 0 && f == te && digits + frac <= 19 && m < (1ULL << 53)) {
            double d = (double)m / pow10[frac];
            *dv = neg ? -d : d;
            *kind = 2;
            L->p = te;
            return 0;
        }
    }
    int is_int = q == te;
    if (is_int && digits <= 19 && v <= (neg ? (1ULL << 63) : (uint64_t)INT64_MAX)) {
        /* an integer that fits in int64 (ids such as 6212393379229260556): exact, as the JSON decoder gives it */
        *iv = neg ? (int64_t)(0 - v) : (int64_t)v;
        *dv = (double)*iv;
        *kind = 1;
        L->p = te;
        return 0;
    }
    *dv = strtod_bounded(p, te);
    *kind = 2;
    L->p = te;
    return 0;
}

static int skip_value(Lex *L, int depth);

/* at '{' or '[': the whole container, validated as JSON (strings, numbers, literals, nesting) */
static int skip_container(Lex *L, int depth) {
    if (depth > MAX_DEPTH) { L->err = "nested too deeply"; return -1; }
    char close = *L->p == '{' ? '}' : ']';
    L->p++;
    ws(L);
    if (L->p < L->end && *L->p == close) { L->p++; return 0; }
    for (;;) {
        if (close == '}') {
            const char *k; size_t kn; int ke;
            ws(L);
            if (lex_string(L, &k, &kn, &ke) < 0) return -1;
            ws(L);
            if (L->p >= L->end || *L->p != ':') { L->err = "expected ':'"; return -1; }
            L->p++;
        }
        if (skip_value(L, depth) < 0) return -1;
        ws(L);
        if (L->p >= L->end) { L->err = "unterminated object or array"; return -1; }
        if (*L->p == ',') { L->p++; continue; }
        if (*L->p == close) { L->p++; return 0; }
        L->err = close == '}' ? "expected ',' or '}'" : "expected ',' or ']'";
        return -1;
    }
}

static int literal(Lex *L, const char *word, size_t n) {
    if ((size_t)(L->end - L->p) < n || memcmp(L->p, word, n) != 0) { L->err = "invalid literal"; return -1; }
    L->p += n;
    return 0;
}

/* any JSON value, validated; depth is that of the container holding it */
static int skip_value(Lex *L, int depth) {
    ws(L);
    if (L->p >= L->end) { L->err = "unexpected end"; return -1; }
    char c = *L->p;
    if (c == '"') { const char *s; size_t n; int e; return lex_string(L, &s, &n, &e); }
    if (c == '{' || c == '[') return skip_container(L, depth + 1);
    if (c == 't') return literal(L, "true", 4);
    if (c == 'f') return literal(L, "false", 5);
    if (c == 'n') return literal(L, "null", 4);
    const char *te = number_end(L->p, L->end);
    if (!te) { L->err = c == '-' || is_digit(c) ? "bad number" : "invalid character"; return -1; }
    L->p = te;
    return 0;
}

/* ------------------------------------------------------------------ events */

/* args kept per timed event (the first N_EVENT_ARGS), then those of "[memory]" instants */
enum { A_CORR, A_EXT, A_EXT_OLD, A_SEQ, A_FWD, A_BYTES, A_PYID, A_PYPAR, A_MBYTES, A_TALLOC, A_TRES, A_DTYPE, A_DID, NARGS };
#define N_EVENT_ARGS (A_PYPAR + 1)

static int arg_index(const char *k, size_t n) {
#define K(str, idx) if (n == sizeof(str) - 1 && memcmp(k, str, n) == 0) return idx
    switch (n) {
    case 5: K("bytes", A_BYTES); K("Bytes", A_MBYTES); break;
    case 9: K("Device Id", A_DID); K("Python id", A_PYID); break;
    case 11: K("correlation", A_CORR); K("External id", A_EXT); K("external id", A_EXT_OLD); K("Device Type", A_DTYPE); break;
    case 13: K("Fwd thread id", A_FWD); break;
    case 14: K("Total Reserved", A_TRES); break;
    case 15: K("Sequence number", A_SEQ); K("Total Allocated", A_TALLOC); break;
    case 16: K("Python parent id", A_PYPAR); break;
    default: break;
    }
#undef K
    return -1;
}

/* Problems with an event's values, counted (decode.py PROBLEMS lists the same codes in the same order).
 * A timed event with a bad name/cat, pid/tid or ts, or a bad dur, is dropped and counted once,
 * under the first of these that applies; a kept one may count a clamped dur and ignored id args. */
enum { P_NO_TS, P_BAD_TS, P_BAD_DUR, P_NEG_DUR, P_BAD_ID, P_BAD_NAME, P_BAD_ARG, P_NOT_OBJECT, P_MEM_TS, NPROB };

/* an id arg that is not an int64 integer (decode.py BAD_ID): counted where its column keeps it, then absent */
#define BAD_ID (INT64_MIN + 1)

/* |ts| and dur (µs) beyond this are absurd (~31,700 years): the event is dropped */
#define MAX_TIME_US 1e18

typedef struct {
    char ph;
    int ph_ok;
    int32_t cat, name, pid_s, tid_s, stack, argname;
    int64_t pid, tid;
    double ts, dur;
    int has_ts;
    int bad_name, bad_cat, bad_pid, bad_tid, bad_ts, bad_dur;
    unsigned bad_args; /* bit per args index: a value that is not an int64 integer (null is absent, not bad) */
    int64_t a[NARGS];
} Ev;

typedef struct {
    /* timed events: every column has nx rows and room for capx (grown together) */
    Buf cat, name, pid, tid, pid_s, tid_s, ts, dur, stack;
    Buf a[N_EVENT_ARGS];
    size_t nx, capx;
    /* memory instants */
    Buf m_ts, m_bytes, m_alloc, m_res, m_dtype, m_did;
    /* metadata events */
    Buf meta_name, meta_pid, meta_tid, meta_pid_s, meta_tid_s, meta_arg;
    int64_t counts[256]; /* events per phase byte; [0]: no phase (missing, or not one ASCII character) */
    int64_t problems[NPROB];
    int64_t bad_args[N_EVENT_ARGS]; /* BAD_ID values written per id arg (Python skips the columns without one) */
} Out;

static void out_free(Out *o) {
    Buf *all[] = {&o->cat, &o->name, &o->pid, &o->tid, &o->pid_s, &o->tid_s, &o->ts, &o->dur, &o->stack,
                  &o->m_ts, &o->m_bytes, &o->m_alloc, &o->m_res, &o->m_dtype, &o->m_did,
                  &o->meta_name, &o->meta_pid, &o->meta_tid, &o->meta_pid_s, &o->meta_tid_s, &o->meta_arg};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) free(all[i]->data);
    for (int i = 0; i < N_EVENT_ARGS; i++) free(o->a[i].data);
}

/* room for one more timed event in every column (one check per event, not one per column) */
static int x_reserve(Out *o) {
    if (o->nx < o->capx) return 0;
    size_t nc = o->capx ? o->capx * 2 : 8192;
    Buf *narrow[] = {&o->cat, &o->name, &o->pid_s, &o->tid_s, &o->stack};
    Buf *wide[] = {&o->pid, &o->tid, &o->ts, &o->dur};
    for (size_t i = 0; i < sizeof(narrow) / sizeof(narrow[0]); i++)
        if (buf_grow(narrow[i], nc * 4 - narrow[i]->len) < 0) return -1;
    for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++)
        if (buf_grow(wide[i], nc * 8 - wide[i]->len) < 0) return -1;
    for (int i = 0; i < N_EVENT_ARGS; i++)
        if (buf_grow(&o->a[i], nc * 8 - o->a[i].len) < 0) return -1;
    o->capx = nc;
    return 0;
}

#define XSET(buf, type, value) (((type *)(buf).data)[O.nx] = (value))

/* a double that is an integer within int64 (checked before the cast: out of range it is undefined behaviour) */
static inline int double_to_int64(double d, int64_t *out) {
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return 0; /* also NaN */
    int64_t i = (int64_t)d;
    if ((double)i != d) return 0; /* a fraction */
    *out = i;
    return 1;
}

/* a string value that the scanner interns: returns its id, or -1 after setting *bad (the value was
 * of another type and is skipped) or on error (L->err set) */
static int lex_str_value(Lex *L, Intern *T, int depth, int32_t *id, int *bad) {
    if (L->p < L->end && *L->p == '"') {
        const char *s; size_t n; int e;
        if (lex_string(L, &s, &n, &e) < 0) return -1;
        *id = intern(T, s, n, e);
        if (*id == -2) { L->err = "out of memory"; return -1; }
        *bad = 0;
        return 0;
    }
    if (skip_value(L, depth) < 0) return -1;
    *id = -1;
    *bad = 1;
    return 0;
}

/* pid/tid: an integer (or an integral number) within int64, or a string interned (numeric strings are
 * resolved in Python); anything else sets *bad */
static int lex_id(Lex *L, Intern *T, int depth, int64_t *v, int32_t *s, int *bad) {
    int64_t iv; double dv; int kind;
    if (lex_number(L, &iv, &dv, &kind) < 0) return -1;
    *s = -1;
    *v = 0;
    if (kind == 1) { *v = iv; *bad = 0; return 0; }
    if (kind == 2) { *bad = !double_to_int64(dv, v); return 0; }
    return lex_str_value(L, T, depth, s, bad);
}

/* ts/dur: a number (*bad when not finite or beyond MAX_TIME_US); a string is left to the general decoder */
static int lex_time(Lex *L, int depth, double *out, int *bad) {
    int64_t iv; double dv; int kind;
    if (lex_number(L, &iv, &dv, &kind) < 0) return -1;
    if (kind) {
        *out = dv;
        *bad = !(dv >= -MAX_TIME_US && dv <= MAX_TIME_US);
        return 0;
    }
    if (L->p < L->end && *L->p == '"') { L->err = "a time written as a string"; L->unsupported = 1; return -1; }
    if (skip_value(L, depth) < 0) return -1;
    *bad = 1;
    return 0;
}

/* an object key and its ':' (whitespace around them skipped). A key with an escape is left to the
 * general decoder (it may spell a known key: "p\u0068" is "ph"). */
static int lex_key(Lex *L, const char **k, size_t *kn) {
    int ke;
    ws(L);
    if (lex_string(L, k, kn, &ke) < 0) return -1;
    ws(L);
    if (L->p >= L->end || *L->p != ':') { L->err = "expected ':'"; return -1; }
    L->p++;
    ws(L);
    if (ke) { L->err = "an escaped key"; L->unsupported = 1; return -1; }
    if (L->p >= L->end) { L->err = "unexpected end"; return -1; }
    return 0;
}

/* the args of one event; a later "args" replaces an earlier one, as in a JSON object */
static int parse_args(Lex *L, Intern *T, Ev *ev) {
    for (int i = 0; i < NARGS; i++) ev->a[i] = -1;
    ev->bad_args = 0;
    ev->stack = ev->argname = -1;
    ws(L);
    if (L->p >= L->end || *L->p != '{') { /* args that are not an object: ignored */
        return skip_value(L, 1);
    }
    L->p++;
    ws(L);
    if (L->p < L->end && *L->p == '}') { L->p++; return 0; }
    while (L->p < L->end) {
        const char *k; size_t kn;
        if (lex_key(L, &k, &kn) < 0) return -1;
        int idx = arg_index(k, kn);
        if (idx >= 0) {
            int64_t iv; double dv; int kind;
            if (lex_number(L, &iv, &dv, &kind) < 0) return -1;
            ev->a[idx] = -1;
            ev->bad_args &= ~(1u << idx);
            if (kind == 1) ev->a[idx] = iv;
            else if (kind == 2) {
                int64_t v;
                if (double_to_int64(dv, &v)) ev->a[idx] = v;
                else ev->bad_args |= 1u << idx;
            } else {
                int is_null = L->end - L->p >= 4 && memcmp(L->p, "null", 4) == 0;
                if (skip_value(L, 2) < 0) return -1;
                if (!is_null) ev->bad_args |= 1u << idx;
            }
        } else if (kn == 10 && memcmp(k, "Call stack", 10) == 0) {
            int bad;
            if (lex_str_value(L, T, 2, &ev->stack, &bad) < 0) return -1; /* not a string: absent */
        } else if (kn == 4 && memcmp(k, "name", 4) == 0) {
            int bad;
            if (lex_str_value(L, T, 2, &ev->argname, &bad) < 0) return -1;
        } else {
            if (skip_value(L, 2) < 0) return -1;
        }
        ws(L);
        if (L->p < L->end && *L->p == ',') { L->p++; continue; }
        if (L->p < L->end && *L->p == '}') { L->p++; return 0; }
        L->err = "expected ',' or '}' in args";
        return -1;
    }
    L->err = "unterminated args";
    return -1;
}

enum { K_OTHER, K_PH, K_CAT, K_NAME, K_PID, K_TID, K_TS, K_DUR, K_ARGS };

/* the code of a top-level event key */
static inline int top_key_code(const char *k, size_t kn) {
    switch (kn) {
    case 2: if (k[0] == 'p' && k[1] == 'h') return K_PH; if (k[0] == 't' && k[1] == 's') return K_TS; break;
    case 3:
        if (memcmp(k, "cat", 3) == 0) return K_CAT;
        if (memcmp(k, "pid", 3) == 0) return K_PID;
        if (memcmp(k, "tid", 3) == 0) return K_TID;
        if (memcmp(k, "dur", 3) == 0) return K_DUR;
        break;
    case 4: if (memcmp(k, "name", 4) == 0) return K_NAME; if (memcmp(k, "args", 4) == 0) return K_ARGS; break;
    default: break;
    }
    return K_OTHER;
}

/* A known key written as Kineto writes it ("ph": with the colon right after the
 * quote) at p: its code, *len set to the bytes up to and with the colon; -1
 * otherwise (then the general key lexer runs). */
static inline int top_key_fast(const char *p, const char *end, int *len) {
    if (end - p < 8 || p[0] != '"') return -1;
#define FK(lit, code) if (memcmp(p, lit, sizeof(lit) - 1) == 0) { *len = (int)sizeof(lit) - 1; return code; }
    switch (p[1]) {
    case 'p': FK("\"ph\":", K_PH); FK("\"pid\":", K_PID); break;
    case 'c': FK("\"cat\":", K_CAT); break;
    case 'n': FK("\"name\":", K_NAME); break;
    case 't': FK("\"ts\":", K_TS); FK("\"tid\":", K_TID); break;
    case 'd': FK("\"dur\":", K_DUR); break;
    case 'a': FK("\"args\":", K_ARGS); break;
    default: break;
    }
#undef FK
    return -1;
}

static int parse_event(Lex *L, Intern *T, Ev *ev) {
    /* at '{' */
    L->p++;
    ev->ph = 0;
    ev->ph_ok = 0;
    ev->cat = ev->name = ev->pid_s = ev->tid_s = ev->stack = ev->argname = -1;
    ev->pid = ev->tid = 0;
    ev->ts = 0; ev->dur = 0; ev->has_ts = 0;
    ev->bad_name = ev->bad_cat = ev->bad_pid = ev->bad_tid = ev->bad_ts = ev->bad_dur = 0;
    ev->bad_args = 0;
    int name_escaped = 0;
    for (int i = 0; i < NARGS; i++) ev->a[i] = -1;
    int has_name = 0, has_cat = 0;
    ws(L);
    if (L->p < L->end && *L->p == '}') { L->p++; goto finish; }
    while (L->p < L->end) {
        int klen, code = top_key_fast(L->p, L->end, &klen);
        if (code >= 0) {
            L->p += klen;
            ws(L);
        } else {
            const char *k; size_t kn;
            if (lex_key(L, &k, &kn) < 0) return -1;
            code = top_key_code(k, kn);
        }
        if (L->p >= L->end) { L->err = "unexpected end"; return -1; }
        switch (code) {
        case K_PH: {
            if (*L->p == '"') {
                const char *s; size_t n; int e;
                if (lex_string(L, &s, &n, &e) < 0) return -1;
                if (e) { L->err = "an escaped ph"; L->unsupported = 1; return -1; }
                ev->ph_ok = n == 1 && (unsigned char)s[0] < 0x80;
                ev->ph = ev->ph_ok ? s[0] : 0;
            } else {
                if (skip_value(L, 1) < 0) return -1;
                ev->ph_ok = 0;
                ev->ph = 0;
            }
            break;
        }
        case K_CAT:
            if (lex_str_value(L, T, 1, &ev->cat, &ev->bad_cat) < 0) return -1;
            has_cat = !ev->bad_cat;
            break;
        case K_NAME: {
            int esc_before = L->p < L->end && *L->p == '"';
            if (lex_str_value(L, T, 1, &ev->name, &ev->bad_name) < 0) return -1;
            has_name = !ev->bad_name;
            name_escaped = esc_before && has_name && T->escaped.data[ev->name];
            break;
        }
        case K_PID:
            if (lex_id(L, T, 1, &ev->pid, &ev->pid_s, &ev->bad_pid) < 0) return -1;
            break;
        case K_TID:
            if (lex_id(L, T, 1, &ev->tid, &ev->tid_s, &ev->bad_tid) < 0) return -1;
            break;
        case K_TS:
            if (lex_time(L, 1, &ev->ts, &ev->bad_ts) < 0) return -1;
            ev->has_ts = 1;
            break;
        case K_DUR:
            if (lex_time(L, 1, &ev->dur, &ev->bad_dur) < 0) return -1;
            break;
        case K_ARGS:
            if (parse_args(L, T, ev) < 0) return -1;
            break;
        default:
            if (skip_value(L, 1) < 0) return -1;
        }
        ws(L);
        if (L->p < L->end && *L->p == ',') { L->p++; ws(L); continue; }
        if (L->p < L->end && *L->p == '}') { L->p++; goto finish; }
        L->err = "expected ',' or '}'";
        return -1;
    }
    L->err = "unterminated event";
    return -1;
finish:
    if (ev->ph == 'i' && name_escaped) { L->err = "an escaped instant name"; L->unsupported = 1; return -1; }
    if (!has_name && !ev->bad_name) ev->name = intern(T, "", 0, 0);
    if (!has_cat && !ev->bad_cat) ev->cat = intern(T, "", 0, 0);
    if (ev->cat == -2 || ev->name == -2) { L->err = "out of memory"; return -1; }
    return 0;
}

static PyObject *bytes_of(Buf *b) { return PyBytes_FromStringAndSize(b->data ? b->data : "", (Py_ssize_t)b->len); }

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    int mode = -1; /* 1: bare events "{...},{...}"; 0: an array "[...]"; -1: by the first byte */
    if (!PyArg_ParseTuple(args, "y*|i", &view, &mode)) return NULL;
    Lex L = {(const char *)view.buf, (const char *)view.buf + view.len, (const char *)view.buf, NULL, 0};
    Intern T;
    Out O;
    memset(&O, 0, sizeof(O));
    PyObject *result = NULL;
    int32_t memory_name = -1;
    if (intern_init(&T) < 0) { PyBuffer_Release(&view); return PyErr_NoMemory(); }
    int failed = 0;
    const char *event_start = L.p; /* where the event being read began (reported with an error) */

    Py_BEGIN_ALLOW_THREADS
    ws(&L);
    /* "[{...},{...}]", or the bare events "{...},{...}" (a slice of the file, a trailing comma allowed) */
    int bare = mode >= 0 ? mode : (L.p < L.end && *L.p == '{');
    if (!bare && (L.p >= L.end || *L.p != '[')) { L.err = "expected '['"; failed = 1; }
    else {
        if (!bare) L.p++;
        ws(&L);
        if (!bare && L.p < L.end && *L.p == ']') L.p++;
        else {
            memory_name = intern(&T, "[memory]", 8, 0);
            if (memory_name < 0) goto nomem;
            Ev ev;
            while (L.p < L.end) {
                ws(&L);
                event_start = L.p;
                if (L.p >= L.end) { L.err = "unexpected end"; failed = 1; break; }
                if (*L.p != '{') { /* an item that is not an event object: skipped, counted */
                    if (skip_value(&L, 0) < 0) { failed = 1; break; }
                    O.problems[P_NOT_OBJECT]++;
                } else {
                if (parse_event(&L, &T, &ev) < 0) { failed = 1; break; }
                unsigned char ph = (unsigned char)ev.ph;
                O.counts[ev.ph_ok ? ph : 0]++;
                if (ph == 'X' && ev.ph_ok) {
                    int why = -1;
                    if (ev.bad_name || ev.bad_cat) why = P_BAD_NAME;
                    else if (ev.bad_pid || ev.bad_tid) why = P_BAD_ID;
                    else if (!ev.has_ts) why = P_NO_TS;
                    else if (ev.bad_ts) why = P_BAD_TS;
                    else if (ev.bad_dur) why = P_BAD_DUR;
                    if (why >= 0) {
                        O.problems[why]++;
                    } else {
                        if (ev.dur < 0) { ev.dur = 0.0; O.problems[P_NEG_DUR]++; } /* clamped */
                        for (int i = 0; i < N_EVENT_ARGS; i++)
                            if (ev.bad_args & (1u << i)) { ev.a[i] = BAD_ID; O.bad_args[i]++; } /* counted in Python where kept */
                        if (x_reserve(&O) < 0) goto nomem;
                        XSET(O.cat, int32_t, ev.cat); XSET(O.name, int32_t, ev.name);
                        XSET(O.pid, int64_t, ev.pid); XSET(O.tid, int64_t, ev.tid);
                        XSET(O.pid_s, int32_t, ev.pid_s); XSET(O.tid_s, int32_t, ev.tid_s);
                        XSET(O.ts, double, ev.ts); XSET(O.dur, double, ev.dur); XSET(O.stack, int32_t, ev.stack);
                        for (int i = 0; i < N_EVENT_ARGS; i++) XSET(O.a[i], int64_t, ev.a[i]);
                        O.nx++;
                    }
                } else if (ph == 'i' && ev.ph_ok && ev.name == memory_name && !ev.bad_name) {
                    if (!ev.has_ts || ev.bad_ts) {
                        O.problems[P_MEM_TS]++;
                    } else {
                        double ts = ev.ts;
                        PUSH(O.m_ts, ts); PUSH(O.m_bytes, ev.a[A_MBYTES]); PUSH(O.m_alloc, ev.a[A_TALLOC]);
                        PUSH(O.m_res, ev.a[A_TRES]); PUSH(O.m_dtype, ev.a[A_DTYPE]); PUSH(O.m_did, ev.a[A_DID]);
                    }
                } else if (ph == 'M' && ev.ph_ok && !ev.bad_name && !ev.bad_pid && !ev.bad_tid) {
                    PUSH(O.meta_name, ev.name); PUSH(O.meta_pid, ev.pid); PUSH(O.meta_tid, ev.tid);
                    PUSH(O.meta_pid_s, ev.pid_s); PUSH(O.meta_tid_s, ev.tid_s); PUSH(O.meta_arg, ev.argname);
                }
                }
                ws(&L);
                if (L.p < L.end && *L.p == ',') {
                    L.p++;
                    if (bare) { ws(&L); if (L.p >= L.end) break; }
                    continue;
                }
                if (bare && L.p >= L.end) break;
                if (!bare && L.p < L.end && *L.p == ']') { L.p++; break; }
                L.err = "expected ',' or ']' between events";
                failed = 1;
                break;
            }
        }
        if (!failed) {
            ws(&L);
            if (L.p != L.end) { L.err = "trailing data after the events"; failed = 1; }
        }
    }
    goto done;
nomem:
    L.err = "out of memory";
    L.unsupported = 1; /* not the data's fault: the caller may try the general decoder */
    failed = 1;
done:
    Py_END_ALLOW_THREADS

    if (failed) {
        /* ValueError(kind, message, error offset, offset of the event it is in) */
        PyObject *exc_args = Py_BuildValue("(ssnn)", L.unsupported ? "unsupported" : "malformed",
                                           L.err ? L.err : "parse error", (Py_ssize_t)(L.p - L.start),
                                           (Py_ssize_t)(event_start - L.start));
        if (exc_args) {
            PyErr_SetObject(PyExc_ValueError, exc_args);
            Py_DECREF(exc_args);
        }
        goto cleanup;
    }
    {
        static const char *argnames[N_EVENT_ARGS] = {"corr", "ext_id", "ext_id_old", "seq", "fwd_tid", "bytes",
                                                    "py_id", "py_parent"};
        PyObject *d = PyDict_New();
        if (!d) goto cleanup;
#define PUT(key, buf)                                                   \
        do {                                                            \
            PyObject *b_ = bytes_of(&(buf));                            \
            if (!b_ || PyDict_SetItemString(d, key, b_) < 0) { Py_XDECREF(b_); Py_DECREF(d); goto cleanup; } \
            Py_DECREF(b_);                                              \
        } while (0)
        O.cat.len = O.name.len = O.pid_s.len = O.tid_s.len = O.stack.len = O.nx * 4;
        O.pid.len = O.tid.len = O.ts.len = O.dur.len = O.nx * 8;
        for (int i = 0; i < N_EVENT_ARGS; i++) O.a[i].len = O.nx * 8;
        PUT("cat", O.cat); PUT("name", O.name); PUT("pid", O.pid); PUT("tid", O.tid);
        PUT("pid_s", O.pid_s); PUT("tid_s", O.tid_s); PUT("ts", O.ts); PUT("dur", O.dur); PUT("stack", O.stack);
        for (int i = 0; i < N_EVENT_ARGS; i++) PUT(argnames[i], O.a[i]);
        PUT("mem_ts", O.m_ts); PUT("mem_bytes", O.m_bytes); PUT("mem_alloc", O.m_alloc);
        PUT("mem_res", O.m_res); PUT("mem_dtype", O.m_dtype); PUT("mem_did", O.m_did);
        PUT("meta_name", O.meta_name); PUT("meta_pid", O.meta_pid); PUT("meta_tid", O.meta_tid);
        PUT("meta_pid_s", O.meta_pid_s); PUT("meta_tid_s", O.meta_tid_s); PUT("meta_arg", O.meta_arg);
        PUT("str_offsets", T.offsets); PUT("str_lengths", T.lengths); PUT("str_escaped", T.escaped);
        PUT("str_arena", T.arena);
        Buf counts = {(char *)O.counts, sizeof(O.counts), sizeof(O.counts)};
        PUT("counts", counts);
        Buf problems = {(char *)O.problems, sizeof(O.problems), sizeof(O.problems)};
        PUT("problems", problems);
        Buf bad_args = {(char *)O.bad_args, sizeof(O.bad_args), sizeof(O.bad_args)};
        PUT("bad_args", bad_args);
#undef PUT
        result = d;
    }
cleanup:
    intern_free(&T);
    out_free(&O);
    PyBuffer_Release(&view);
    return result;
}

/* (start, end) of the first "}" followed by optional whitespace and "]" in buffer[lo:hi], or None:
   the next match of the regex rb"\}\s*\]" (reader._END; its \s over bytes is space, \t, \n,
   \r, \v, \f) found with memchr instead of a regex attempt at every "}" (the end search of a
   0.9 MB DLRM rank, line-profiled: 0.41 ms with the regex, 0.11 ms with this). The caller loops from the end of each match, as re.finditer would (the
   matches cannot overlap: "}" and "]" differ), and may stop at any one. */
static PyObject *close_bracket(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t lo, hi;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &lo, &hi)) return NULL;
    if (hi > view.len) hi = view.len;
    if (lo < 0) lo = 0;
    if (lo > hi) lo = hi; /* an empty range (never a pointer past the buffer) */
    const char *base = (const char *)view.buf;
    const char *p = base + (hi > 0 ? lo : 0), *end = base + (hi > 0 ? hi : 0);
    Py_ssize_t at = -1, after = -1;
    Py_BEGIN_ALLOW_THREADS
    while (p < end) {
        const char *q = memchr(p, '}', (size_t)(end - p));
        if (q == NULL) break;
        const char *r = q + 1;
        while (r < end && (*r == ' ' || *r == '\t' || *r == '\n' || *r == '\r' || *r == '\v' || *r == '\f')) r++;
        if (r < end && *r == ']') {
            at = (Py_ssize_t)(q - base);
            after = (Py_ssize_t)(r + 1 - base);
            break;
        }
        p = q + 1;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (at < 0) Py_RETURN_NONE;
    return Py_BuildValue("(nn)", at, after);
}

static PyMethodDef methods[] = {
    {"close_bracket", close_bracket, METH_VARARGS,
     "close_bracket(buffer, lo, hi) -> (start, end) of the first '}' followed by whitespace and ']' in "
     "buffer[lo:hi], or None: the next match of re.compile(rb'\\}\\s*\\]')"},
    {"scan", scan, METH_VARARGS,
     "scan(buffer, bare=-1) -> dict of column bytes (see perfkit/trace/decode.py); bare: 1 for a run of "
     "comma-separated events, 0 for a JSON array, -1 to tell by the first byte"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", "Kineto traceEvents scanner.", -1, methods};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
