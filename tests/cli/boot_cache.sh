#!/usr/bin/env bash
# The boot cache through the CLI, in a private project and cache: the first
# plain boot stores an entry that `provium fixture list` shows and later runs
# reuse; a damaged entry is rebuilt with a warning; --no-boot-cache, a
# profile's boot_cache = false, the boot option boot_cache = false,
# rng_seed and disks make no entry; a bad boot_cache value in provium.toml is refused.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/vm_scripts.sh
. "$ROOT/tests/lib/vm_scripts.sh"

P=$T/proj
mkdir -p "$P"
profile() { # profile EXTRA_LINE: the default profile on the built image, plus a line
    printf '[provium]\nroots = ["."]\n[profiles.default]\nkernel = "%s"\ninitrd = "%s"\n%s\n' \
        "$ROOT/build/image/vmlinux" "$ROOT/build/image/initrd.cpio" "$1" >"$P/provium.toml"
}
profile ""
cat >"$P/two.test.lua" <<'LUA'
test("two plain boots", function(t)
  local a = provium:vm("a", "default"):boot()
  local b = provium:vm("b", "default"):boot()
  t:assert_eq(a:run("echo a").stdout .. b:run("echo b").stdout, "a\nb\n")
end)
LUA
cat >"$P/optout.test.lua" <<'LUA'
test("opted out", function(t)
  t:assert_eq(provium:vm("a", "default", {boot_cache = false}):boot():run("echo a").stdout, "a\n")
  t:assert_eq(provium:vm("b", "default"):boot({boot_cache = false}):run("echo b").stdout, "b\n")
  t:assert_eq(provium:vm("c", "default"):boot({rng_seed = 7}):run("echo c").stdout, "c\n")
  t:assert_eq(provium:vm("d", "default"):boot({disks = {{size = "1M"}}}):run("echo d").stdout, "d\n")
end)
LUA

run() { OUT=$(cd "$P" && timeout -k 5 "$LIMIT" "$PROVIUM" "$@" 2>&1); RC=$?; }
entries() { grep -l '"name": "boot:default"' "$PROVIUM_CACHE_DIR"/fixtures/*/fixture.json 2>/dev/null | wc -l; }

begin "the first plain boot stores an entry that provium fixture list shows"
run two.test.lua
expect_rc 0
[ "$(entries)" = 1 ] || problem "$(entries) boot entries, expected 1"
run fixture list
expect_re '^boot:default +cached '
end_check

begin "a second run reuses the entry"
stamp() { stat -c '%i %Y' "$PROVIUM_CACHE_DIR"/fixtures/*/state; }
before=$(stamp)
run --json two.test.lua
expect_rc 0
expect_no_out "cached boot unusable"
[ "$(stamp)" = "$before" ] || problem "the entry was rewritten: $before -> $(stamp)"
end_check

begin "a damaged entry is rebuilt, with a warning in the report naming the VM"
entry=$(dirname "$(grep -l '"name": "boot:default"' "$PROVIUM_CACHE_DIR"/fixtures/*/fixture.json)")
: >"$entry/state"
run --json two.test.lua
expect_rc 0
expect_out "VM 'a': cached boot unusable, booting cold and rebuilding it"
[ -s "$entry/state" ] || problem "the entry was not rebuilt"
end_check

begin "a kernel whose content changed (mtime kept) gets its own entry"
cp "$ROOT/build/image/vmlinux" "$P/vmlinux"
sed -i "s|^kernel = .*|kernel = \"$P/vmlinux\"|" "$P/provium.toml"
run two.test.lua
n1=$(entries)
head -c 4096 /dev/zero >>"$P/vmlinux" # ELF loaders ignore trailing bytes
touch -r "$ROOT/build/image/vmlinux" "$P/vmlinux"
run two.test.lua
expect_rc 0
[ "$(entries)" = $((n1 + 1)) ] || problem "$(entries) boot entries after the change, expected $((n1 + 1))"
run fixture list
[ "$(grep -c '^boot:default ' <<<"$OUT")" = 1 ] || problem "fixture list should show only the current entry"
end_check

begin "--no-boot-cache, boot_cache = false (VM and boot option), rng_seed and disks make no entry"
rm -rf "$PROVIUM_CACHE_DIR"
run --no-boot-cache two.test.lua
expect_rc 0
run optout.test.lua
expect_rc 0
[ "$(entries)" = 0 ] || problem "$(entries) boot entries, expected none"
end_check

begin "a profile with boot_cache = false makes no entry"
profile "boot_cache = false"
run two.test.lua
expect_rc 0
[ "$(entries)" = 0 ] || problem "$(entries) boot entries, expected none"
end_check

begin "a profile with disks makes no entry (a cached boot would hold another disk's state)"
profile 'disks = [{ id = "scratch", size = "1M" }]'
run two.test.lua
expect_rc 0
[ "$(entries)" = 0 ] || problem "$(entries) boot entries, expected none"
end_check

begin "boot_cache in provium.toml must be a boolean"
profile 'boot_cache = "no"'
run two.test.lua
expect_rc 2
expect_out "boot_cache must be true or false"
end_check

check_summary
