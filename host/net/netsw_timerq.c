/* Frames held back by latency, jitter or the token bucket: a binary min-heap
 * ordered by due time, then by arrival (seq), so frames due at the same
 * instant leave in the order they came and a pair without jitter is never
 * reordered. */
#include "netsw_int.h"

#include <stdlib.h>

#include "../util/util.h"

static bool before(const delayed *a, const delayed *b)
{
    return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static void swap(delayed *a, delayed *b)
{
    delayed t = *a;
    *a = *b;
    *b = t;
}

void timerq_push(timerq *q, delayed d)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 256;
        q->v = xrealloc(q->v, q->cap * sizeof(*q->v));
    }
    d.seq = q->seq++;
    size_t i = q->n++;
    q->v[i] = d;
    while (i > 0 && before(&q->v[i], &q->v[(i - 1) / 2])) {
        swap(&q->v[i], &q->v[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
}

bool timerq_pop_due(timerq *q, int64_t now_ns, delayed *out)
{
    if (q->n == 0 || q->v[0].due_ns > now_ns)
        return false;
    *out = q->v[0];
    q->v[0] = q->v[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->n && before(&q->v[l], &q->v[m]))
            m = l;
        if (r < q->n && before(&q->v[r], &q->v[m]))
            m = r;
        if (m == i)
            break;
        swap(&q->v[i], &q->v[m]);
        i = m;
    }
    return true;
}

int64_t timerq_next_due(const timerq *q) { return q->n ? q->v[0].due_ns : -1; }

void timerq_free(timerq *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->v[i].f);
    free(q->v);
    *q = (timerq){0};
}
