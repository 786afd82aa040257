/* The accelerator probe against real QEMU: the banner detection works (a
 * TCG boot of the default kernel prints "Linux version"), and a file that is
 * not a kernel is a failed probe that quotes QEMU. Needs `make image`; the
 * image-dependent cases are skipped with a note without it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../host/util/util.h"
#include "../../host/vmm/accel.h"
#include "check.h"

TEST(banner_under_tcg)
{
    const char *kernel = "build/image/vmlinux";
    if (access(kernel, R_OK) == 0) {
        accel_verdict v;
        accel_probe_run("tcg", kernel, "microvm", &v);
        CHECKF(v.kvm, "the probe did not see the banner: %s", v.reason);
    } else {
        printf("note: %s missing (run make image); banner case skipped\n", kernel);
    }
}

TEST(not_a_kernel)
{
    char tmpl[] = "/tmp/pvaccel-XXXXXX";
    int fd = mkstemp(tmpl);
    CHECK(fd >= 0 && write(fd, "junk", 4) == 4);
    close(fd);
    accel_verdict v;
    accel_probe_run("tcg", tmpl, "microvm", &v);
    CHECK(!v.kvm);
    CHECKF(strstr(v.reason, "invalid kernel header") != NULL, "reason does not quote QEMU: %s", v.reason);
    CHECKF(strstr(v.reason, "did not run") != NULL, "reason: %s", v.reason);
    unlink(tmpl);
}

TEST(requested)
{
    char err[200];
    unsetenv("PROVIUM_ACCEL");
    pv_profile p = {0};
    CHECK_EQ_STR(accel_requested(&p, err, sizeof(err)), "auto");
    p.accel = "tcg";
    CHECK_EQ_STR(accel_requested(&p, err, sizeof(err)), "tcg");
    setenv("PROVIUM_ACCEL", "kvm", 1);
    CHECK_EQ_STR(accel_requested(&p, err, sizeof(err)), "kvm");
    setenv("PROVIUM_ACCEL", "fast", 1);
    CHECK(accel_requested(&p, err, sizeof(err)) == NULL);
    CHECKF(strstr(err, "PROVIUM_ACCEL") != NULL, "%s", err);
    unsetenv("PROVIUM_ACCEL");
}

CHECK_MAIN()
