/* The switch's only source of randomness: xoshiro256** seeded through
 * splitmix64 (the seeding its authors recommend). Every drop and jitter
 * decision draws from one of these, so a bridge seed replays them exactly;
 * nothing here reads the clock or /dev/urandom. */
#include "netsw_int.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void netsw_rng_seed(netsw_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t netsw_rng_next(netsw_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double netsw_rng_unit(netsw_rng *r) { return (double)(netsw_rng_next(r) >> 11) * 0x1.0p-53; }

/* FNV-1a: mixes a VM name into a pair's stream seed. */
uint64_t netsw_name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}
