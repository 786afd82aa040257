# project_toml DIR: writes DIR/provium.toml for a test project whose roots are
# DIR itself and whose default profile is the guest image `make image` built
# (ROOT must be the repository root). Scripts append what else they need.
project_toml() {
    mkdir -p "$1"
    cat >"$1/provium.toml" <<TOML
[provium]
roots = ["."]
[profiles.default]
kernel = "$ROOT/build/image/vmlinux"
initrd = "$ROOT/build/image/initrd.cpio"
TOML
}
