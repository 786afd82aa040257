/* Benchmark sections outside bench.c (shared median helper). */
#ifndef PROVIUM_BENCH_NET_H
#define PROVIUM_BENCH_NET_H
#include "../host/config/config.h"
double bench_median(double *v, int n);
/* The switch's forwarding rate vs a raw relay, and its CPU per Gbit/s. */
void bench_switch(const char *scratch, int iters);
/* Ping RTT and TCP throughput guest to guest: switch vs a direct stream link. */
void bench_guests(const pv_profile *p, const char *scratch);
#endif
