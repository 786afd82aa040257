---@meta
-- Provium type stubs for the Lua language server (written by `provium lsp-setup`).
-- They describe the API so editors complete it and stop flagging globals.

---@class RunResult
---@field exit_code integer  -1 signalled, -2 timed out
---@field stdout string
---@field stderr string
---@field status "exited"|"signalled"|"timed_out"
---@field signal integer|nil
---@field timed_out boolean
local RunResult = {}
---@return boolean
function RunResult:ok() end
---@param msg? string
---@return RunResult
function RunResult:assert_ok(msg) end

---@class StreamBase what Streams and ConsoleStreams share
local StreamBase = {}
---@param timeout? number|string
---@return string|nil
function StreamBase:next(timeout) end
---@param pattern string
---@param timeout? number|string
---@return string
function StreamBase:read_until(pattern, timeout) end
---@param pattern string
---@param timeout? number|string
function StreamBase:expect(pattern, timeout) end
---@param timeout? number|string
---@return string[]
function StreamBase:drain(timeout) end
---@return boolean
function StreamBase:eof() end
function StreamBase:close() end

---@class Stream: StreamBase
local GuestStream = {}
---@return {file: string, line: integer}|nil
function GuestStream:creation_site() end
---@return "tail_file"|"fd_stream"|"file_tail_stream"|"proc_stdout_stream"|"proc_stderr_stream"
function GuestStream:kind() end

---@class File
local File = {}
---@param n integer
---@return string
function File:read(n) end
---@return string
function File:read_all() end
---@param data string
---@return integer
function File:write(data) end
---@param offset integer
---@param whence? "set"|"cur"|"end"
---@return integer
function File:seek(offset, whence) end
---@return integer
function File:tell() end
---@return integer
function File:fd() end
function File:close() end
---@return Stream
function File:tail_stream() end
---@return {file: string, line: integer}|nil
function File:creation_site() end

---@class Process
local Process = {}
---@param timeout? number|string
---@return RunResult
function Process:wait(timeout) end
---@param sig? integer|string
function Process:kill(sig) end
---@param sig integer|string
function Process:signal(sig) end
---@return integer
function Process:pid() end
---@return integer
function Process:handle() end
---@return string
function Process:status() end
---@param data string
---@return integer
function Process:stdin_write(data) end
function Process:close_stdin() end
---@return Stream
function Process:stdout_stream() end
---@return Stream
function Process:stderr_stream() end
function Process:close() end

---@class Clock
local Clock = {}
---@return number
function Clock:get() end
---@return integer
function Clock:get_ns() end
---@param seconds number
function Clock:set(seconds) end
---@param ns integer
function Clock:set_ns(ns) end
---@param seconds number
---@return number
function Clock:advance(seconds) end
---@param seconds number
function Clock:sleep(seconds) end

---@class Snapshot
local Snapshot = {}
---@return string
function Snapshot:path() end
---@return integer
function Snapshot:size() end
function Snapshot:delete() end

---@class DiskSpec a disk of the boot option `disks` or vm:attach_disk
---@field id? string name and virtio serial
---@field size? integer|string blank scratch disk of this many bytes ("64M")
---@field scratch? integer|string same as size
---@field path? string image file (the VM writes to an overlay)
---@field image? string same as path (attach_disk)
---@field template? string same as path
---@field format? "raw"|"qcow2"
---@field readonly? boolean
---@field persist? boolean write to the image itself
---@field power_cut? boolean log writes for disk:power_cut()

---@class DiskRule options of the guest-visible fault rules
---@field op? "read"|"write"|"flush"|"any"
---@field errno? string|integer "EIO" by default
---@field once? boolean
---@field sector? integer
---@field count? integer
---@field after? integer
---@field delay? number|string

---@class Disk a block device of a VM (vm:disk, vm:attach_disk)
local Disk = {}
---@return string
function Disk:id() end
---@return integer bytes
function Disk:size() end
---@return string|nil host file behind the disk
function Disk:path() end
---@return string the guest's device, "/dev/vdb"
function Disk:guest_path() end
---@param first integer sector
---@param count integer sectors
---@return string
function Disk:read_sectors(first, count) end
---@param first integer sector
---@param data string
function Disk:write_sectors(first, data) end
---@param mode "eio_read"|"eio_write"|"slow" host-side only
function Disk:fault_inject(mode) end
function Disk:clear_faults() end
---@return string[]
function Disk:active_faults() end
---@param opts DiskRule
function Disk:fail(opts) end
---@param opts? DiskRule
function Disk:fail_reads(opts) end
---@param opts? DiskRule
function Disk:fail_writes(opts) end
---@param opts? DiskRule
function Disk:fail_flushes(opts) end
---@param first integer
---@param count integer
---@param opts? DiskRule
function Disk:fail_range(first, count, opts) end
---@param n integer
---@param opts? DiskRule
function Disk:fail_after(n, opts) end
---@param duration number|string
function Disk:delay(duration) end
---@return {lost_writes: integer, kept_writes: integer}
function Disk:power_cut() end
---@param opts? {timeout?: number|string}
function Disk:detach(opts) end
---@return boolean
function Disk:is_detached() end

---@class SyscallResult
---@field ret integer
---@field result integer
---@field errno integer
---@field out_bufs string[]
---@field out_data string|nil

---@class Output
---@field value string
local Output = {}
---@param sub string
---@return boolean
function Output:contains(sub) end
---@param prefix string
---@return boolean
function Output:starts_with(prefix) end
---@return string
function Output:trim() end

---@class ExecResult classic result of vm:exec
---@field ok boolean
---@field exit_code integer
---@field stdout Output
---@field stderr Output

---@class Batch builder passed to the function given to vm:batch
local Batch = {}
function Batch:read_file(path) end
function Batch:write_file(path, data, mode) end
function Batch:stat(path) end
function Batch:listdir(path) end
function Batch:mkdir(path, opts) end
function Batch:unlink(path) end
function Batch:rename(from, to) end
function Batch:syscall(nr, ...) end
function Batch:ping() end

---@class ConsoleStream: StreamBase a Stream over the serial console log

---@class Console
local Console = {}
---@return string
function Console:read_log() end
---@param data string
---@param opts? {timeout?: number|string} how long the write may take (default 10 s; 0: no limit of its own)
function Console:write(data, opts) end
---Does nothing: the console belongs to the VM and stays open.
function Console:close() end
---@param text string
---@param timeout? number|string
---@return string
function Console:expect(text, timeout) end
---@return ConsoleStream
function Console:read() end

---@class AsyncSyscall
local AsyncSyscall = {}
---@param timeout? number|string
---@return SyscallResult|integer
function AsyncSyscall:await(timeout) end
---@return boolean
function AsyncSyscall:done() end
function AsyncSyscall:close() end

---@class PushFileOpts
---@field perm? integer permission bits of the guest file (default: the host file's)

---@class Guest what VMs and workers both do
local Guest = {}
---@return string
function Guest:name() end
---@return string
function Guest:profile() end
---@return "created"|"booted"|"paused"|"shutdown"|"dead"
function Guest:state() end
function Guest:close() end
---@return number
function Guest:boot_seconds() end
---@return string
function Guest:console_log() end
---@return string|nil
function Guest:cid() end
---@return boolean
function Guest:is_quiescent() end
---@return true
function Guest:ping() end
function Guest:reconnect() end
---@param cmd string|table
---@param args_or_opts? table
---@param opts? table
---@return RunResult
function Guest:run(cmd, args_or_opts, opts) end
---Runs a kselftest binary, an installed tree with run_kselftest.sh, or a command line; its KTAP cases become
---sub-tests of the running test.
---@param path_or_cmd string
---@param opts? {timeout?: number|string, env?: table<string, any>, cwd?: string, args?: string[], tests?: string[], suite?: string}
---@return {passed: integer, failed: integer, skipped: integer, todo: integer, cases: {name: string, status: string, message?: string}[], stdout: string, stderr: string, exit_code: integer, status: string}
function Guest:kselftest(path_or_cmd, opts) end
---Loads a KUnit test module (a host .ko path) or reads a built-in suite; its cases become sub-tests.
---@param module_or_suite string
---@param opts? {params?: string, keep?: boolean}
---@return {passed: integer, failed: integer, skipped: integer, todo: integer, cases: {name: string, status: string, message?: string}[], suites: string[]}
function Guest:kunit(module_or_suite, opts) end
---@return Process
function Guest:run_async(cmd, args_or_opts, opts) end
---@return ExecResult
function Guest:exec(cmd, args_or_opts) end
---@param path string
---@return string
function Guest:read_file(path) end
---@param path string
---@param data string
---@param mode? integer
function Guest:write_file(path, data, mode) end
---@param host_path string relative: resolved against the directory of the Lua file that calls it
---@param guest_path string
---@param opts? PushFileOpts
function Guest:push_file(host_path, guest_path, opts) end
---@return {size: integer, mtime: number, mtime_ns: integer, perm: integer, entry_type: string}
function Guest:stat(path) end
---@return {name: string, entry_type: string}[]
function Guest:listdir(path) end
---@param opts? {perm?: integer, parents?: boolean}
function Guest:mkdir(path, opts) end
function Guest:unlink(path) end
function Guest:rename(from, to) end
---@param mode {read?: boolean, write?: boolean, create?: boolean, truncate?: boolean, append?: boolean, exclusive?: boolean, perm?: integer}
---@return File
function Guest:open_file(path, mode) end
---@return integer
function Guest:open_file_count() end
---@return integer
function Guest:open_stream_count() end
---@param opts? {start?: "end"|"beginning"|"start"|integer}
---@return Stream
function Guest:tail_file(path, opts) end
---@return Stream
function Guest:fd_stream(fd_or_file) end
---@return SyscallResult|integer
function Guest:syscall(nr, ...) end
---On a worker: the syscall runs while the test goes on. On a VM it raises
---(an asynchronous syscall needs a worker: vm:spawn_worker()).
---@return AsyncSyscall
function Guest:syscall_async(nr, ...) end
---@return SyscallResult
function Guest:ioctl(fd_or_file, cmd, data, opts) end
---@return Clock
function Guest:clock() end
---@param fn fun(b: Batch)
---@return table[]
function Guest:batch(fn) end
---@return Console
function Guest:console() end

---@class VM: Guest
local VM = {}
---@param opts? table
---@return VM
function VM:boot(opts) end
function VM:shutdown() end
function VM:pause() end
function VM:resume() end
function VM:reset() end
function VM:power_button() end
---@param data string
function VM:console_write(data) end
---@param path? string
---@return Snapshot
function VM:snapshot(path) end
---@return VM
function VM:restore(snap_or_path) end
---@param id string
---@return Disk
function VM:disk(id) end
---@return Disk[]
function VM:disks() end
---@param opts DiskSpec
---@return Disk
function VM:attach_disk(opts) end
---@param opts? {thread?: boolean}
---@return Worker
function VM:spawn_worker(opts) end
---@param opts? {thread?: boolean}
---@return Worker
function VM:spawn(opts) end
---The NIC on bridge `name`, or by guest name ("eth0": the Nth attached bridge by name).
---@param name string
---@return Nic
function VM:nic(name) end

---@class Worker: Guest a second agent in the guest (vm:spawn_worker); VM-only calls raise
local Worker = {}
---@return integer
function Worker:pid() end
---@return integer
function Worker:id() end
---@return integer the same number as id()
function Worker:handle() end
---@return boolean
function Worker:is_thread() end
---@return boolean
function Worker:alive() end
---@param sig? string|integer without it the worker ends; with it, its run_async processes get sig
---@return integer|nil signalled how many processes were signalled (with sig)
function Worker:kill(sig) end
---@param timeout? number|string
---@return {alive: integer, waited: integer}
function Worker:join(timeout) end

---@class LabSnapshot
local LabSnapshot = {}
---@return string
function LabSnapshot:path() end
---@return integer
function LabSnapshot:size() end
function LabSnapshot:delete() end

---@class Capture: StreamBase pcap bytes (global header, then records) the switch writes
local Capture = {}
---@return {file: string, line: integer}|nil
function Capture:creation_site() end
---@return string the pcap file being written
function Capture:path() end
---@return integer frames written so far
function Capture:packets() end
---Copies the capture so far to path (it goes on).
---@param path string
---@return string
function Capture:save(path) end

---@class NicCounters
---@field rx_bytes integer what the guest received
---@field tx_bytes integer what the guest sent
---@field rx_packets integer
---@field tx_packets integer
---@field dropped integer frames the guest sent that the switch dropped
---@field errors integer

---@class Nic one VM's port on one bridge
local Nic = {}
---@return string
function Nic:vm_name() end
---@return string
function Nic:bridge() end
---@return string "10.N.0.H"
function Nic:address() end
---@return string "52:54:00:..."
function Nic:mac() end
---@return NicCounters
function Nic:counters() end
---Link down on the switch and in the guest (QMP set_link: carrier 0).
function Nic:disconnect() end
function Nic:reconnect() end
---@return boolean
function Nic:is_connected() end
---@param opts? {file?: string}
---@return Capture
function Nic:capture(opts) end

---@alias Endpoint VM|string
---@class Bridge a broadcast domain of the file's user-space switch
local Bridge = {}
---@return string
function Bridge:name() end
---@return string "10.N.0.0/24"
function Bridge:subnet() end
---@return string the uplink's gateway (also the host's 127.0.0.1 through the NAT)
function Bridge:gateway() end
---@return integer|nil the switch's PRNG seed (nil before the first port)
function Bridge:seed() end
---@param x Endpoint|Endpoint[]
---@return Bridge
function Bridge:attach(x) end
---@param x Endpoint
function Bridge:detach(x) end
---@return string[]
function Bridge:members() end
---@param x Endpoint
---@return Nic
function Bridge:nic(x) end
---@param a Endpoint|{from: Endpoint, to: Endpoint}
---@param b? Endpoint
function Bridge:partition(a, b) end
---@param a Endpoint|{from: Endpoint, to: Endpoint}
---@param b? Endpoint
function Bridge:unpartition(a, b) end
function Bridge:partition_all() end
function Bridge:restore_all() end
---@return boolean
function Bridge:is_partitioned(a, b) end
---@param x number|{from?: Endpoint, to?: Endpoint, ms: number, jitter?: number} one-way milliseconds
function Bridge:add_latency(x) end
---@param x {from: Endpoint, to: Endpoint, ms: number, jitter?: number}
function Bridge:add_directional_latency(x) end
---@param x number|{from?: Endpoint, to?: Endpoint, p: number} percent, 0..100
function Bridge:drop_rate(x) end
---@param x {from: Endpoint, to: Endpoint, p: number}
function Bridge:directional_drop_rate(x) end
---@param x integer|{from?: Endpoint, to?: Endpoint, bps: integer} bits per second
function Bridge:bandwidth_limit(x) end
function Bridge:reset() end
---@return number
function Bridge:latency_ms() end
---@return number
function Bridge:jitter_ms() end
---@return number
function Bridge:drop_rate_pct() end
---@return integer
function Bridge:bandwidth_bps() end
---@param x Endpoint
function Bridge:isolate(x) end
---@param x Endpoint
function Bridge:unisolate(x) end
---@return boolean
function Bridge:is_isolated(x) end
---@param x Bridge|string|(Bridge|string)[]
function Bridge:route(x) end
---@return string[]
function Bridge:routes() end
function Bridge:enable_uplink() end
function Bridge:disable_uplink() end
---@return boolean
function Bridge:uplink_enabled() end
---@param opts? {file?: string}
---@return Capture
function Bridge:capture(opts) end
function Bridge:close() end

---@class Lab
---@field rng_seed integer|nil seeds the switch of this lab's bridges without their own seed
local Lab = {}
---@return string
function Lab:name() end
---@param name string
---@param profile? string
---@param opts? table
---@return VM
function Lab:vm(name, profile, opts) end
---@param name? string
---@return Lab
function Lab:lab(name) end
---The bridge of that name, made when there is none.
---@param name string
---@param opts? {seed?: integer}
---@return Bridge
function Lab:bridge(name, opts) end
---@param x VM|Lab|Bridge|(VM|Lab|Bridge)[]
function Lab:include(x) end
---@param x string|VM|Lab|Bridge
function Lab:remove(x) end
---@return {kind: "vm"|"bridge"|"sub_lab", name: string}[]
function Lab:members() end
---@return string[]
function Lab:vm_names() end
---@return string[]
function Lab:sub_lab_names() end
---@return string[]
function Lab:bridge_names() end
---@return Lab
function Lab:boot() end
function Lab:shutdown() end
function Lab:pause() end
function Lab:resume() end
---@param dir? string
---@return LabSnapshot|string
function Lab:snapshot(dir) end
---@param snap_or_dir LabSnapshot|string
function Lab:restore(snap_or_dir) end

---@class T
---@field name string
---@field meta table
local T = {}
function T:assert(cond, msg) end
function T:assert_eq(actual, expected, msg) end
function T:assert_neq(actual, unexpected, msg) end
function T:assert_contains(haystack, needle, msg) end
---@param fn function
---@param msg? string names the call in the failure; any other arguments go to fn
---@return any
function T:assert_raises(fn, msg, ...) end
---@param kind string "WARNING", "oops", "KASAN", "lockdep", "hung_task", ... or text of the report's title
---@param fn function
---@return {vm: string, kind: string, title: string, text: string}[] the matching kernel reports
function T:expect_kernel_report(kind, fn) end
---Records each KTAP case of text as a sub-test "<test> / <suite> / <case>"; a failed case fails the test.
---@param text string
---@param opts? {suite?: string}
---@return {passed: integer, failed: integer, skipped: integer, todo: integer, cases: {name: string, status: string, message?: string}[]}
function T:ktap(text, opts) end
function T:fail(msg) end
function T:skip(reason) end
function T:log(...) end

---@class Provium: Lab
---@field timeout number|string|nil
---@field reset_between_tests boolean|nil
provium = {}
---@return VM
function provium:vm(name, profile, opts) end
---@param name string
---@return VM
---@overload fun(name: string): VM
function provium:vm_fixture(name) end
---@param name string
---@return Lab
---@overload fun(name: string): Lab
function provium:lab_fixture(name) end
---@return VM
function provium.create(profile, opts) end
---@return VM
function provium.fixture(name) end
---@param path string
---@overload fun(self: Provium, path: string)
function provium.depends_on_file(path) end
---An ext4 image of a host directory (mke2fs -d, no root needed); returns its absolute path.
---@param opts {dir: string, path: string, size?: integer|string, label?: string}
---@return string
function provium.ext4_image(opts) end
function provium.shutdown_all() end
---@param resources {memory?: integer|string, cpus?: integer}
function provium:claim(resources) end
function provium:barrier(name, count, timeout) end
---@param ... fun()
function provium:parallel(...) end
---@param fmt string
---@return string
---@overload fun(self: Provium, fmt: string, ...): string
function provium.pack(fmt, ...) end
---@param fmt string
---@param data string
---@param pos? integer
---@return any ...
---@overload fun(self: Provium, fmt: string, data: string, pos?: integer): any ...
function provium.unpack(fmt, data, pos) end

---@param name string
---@param meta_or_fn table|fun(t: T)
---@param fn? fun(t: T)
function test(name, meta_or_fn, fn) end
---@param reason? string
function todo(reason) end
---@return any
function wait_until(pred, opts) end
function assert_eq(a, b, msg) end
function assert_contains(haystack, needle, msg) end

---@class Json
json = {}
---@return string
function json.encode(value) end
---@return any
function json.decode(text) end
