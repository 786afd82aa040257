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

---@class Stream
local Stream = {}
---@param timeout? number|string
---@return string|nil
function Stream:next(timeout) end
---@param pattern string
---@param timeout? number|string
---@return string
function Stream:read_until(pattern, timeout) end
---@param pattern string
---@param timeout? number|string
function Stream:expect(pattern, timeout) end
---@param timeout? number|string
---@return string[]
function Stream:drain(timeout) end
---@return boolean
function Stream:eof() end
function Stream:close() end
---@return {file: string, line: integer}|nil
function Stream:creation_site() end

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

---@class SyscallResult
---@field ret integer
---@field result integer
---@field errno integer
---@field out_bufs string[]
---@field out_data string|nil

---@class VM
local VM = {}
---@param opts? table
---@return VM
function VM:boot(opts) end
function VM:shutdown() end
function VM:pause() end
function VM:resume() end
function VM:reset() end
function VM:power_button() end
function VM:close() end
---@return string
function VM:name() end
---@return string
function VM:profile() end
---@return "created"|"booted"|"paused"|"shutdown"|"dead"
function VM:state() end
---@param cmd string|table
---@param args_or_opts? table
---@param opts? table
---@return RunResult
function VM:run(cmd, args_or_opts, opts) end
---@return Process
function VM:run_async(cmd, args_or_opts, opts) end
---@return table classic result {ok, exit_code, stdout, stderr}
function VM:exec(cmd, args_or_opts) end
---@param path string
---@return string
function VM:read_file(path) end
---@param path string
---@param data string
---@param mode? integer
function VM:write_file(path, data, mode) end
---@param host_path string
---@param guest_path string
function VM:push_file(host_path, guest_path) end
---@return {size: integer, mtime: number, mtime_ns: integer, perm: integer, entry_type: string}
function VM:stat(path) end
---@return {name: string, entry_type: string}[]
function VM:listdir(path) end
function VM:mkdir(path, opts) end
function VM:unlink(path) end
function VM:rename(from, to) end
---@param mode {read?: boolean, write?: boolean, create?: boolean, truncate?: boolean, append?: boolean, exclusive?: boolean, perm?: integer}
---@return File
function VM:open_file(path, mode) end
---@return Stream
function VM:tail_file(path, opts) end
---@return Stream
function VM:fd_stream(fd_or_file) end
---@return SyscallResult|integer
function VM:syscall(nr, ...) end
---@return SyscallResult
function VM:ioctl(fd_or_file, cmd, data, opts) end
---@return Clock
function VM:clock() end
---@return table[]
function VM:batch(fn) end
---@return Snapshot
function VM:snapshot(path) end
---@return VM
function VM:restore(snap_or_path) end
---@return VM
function VM:spawn_worker(opts) end
---@return VM
function VM:spawn(opts) end
---@return table
function VM:console() end

---@class Lab
local Lab = {}
---@return VM
function Lab:vm(name, profile, opts) end
---@return Lab
function Lab:lab(name) end

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
function T:fail(msg) end
function T:skip(reason) end
function T:log(...) end

---@class Provium: Lab
---@field timeout number|string|nil
---@field reset_between_tests boolean|nil
provium = {}
---@return VM
function provium:vm(name, profile, opts) end
---@return VM
function provium:vm_fixture(name) end
---@return Lab
function provium:lab_fixture(name) end
---@return VM
function provium.create(profile, opts) end
---@return VM
function provium.fixture(name) end
function provium.shutdown_all() end
function provium:claim(resources) end
function provium:barrier(name, count, timeout) end
function provium:parallel(...) end
---@return string
function provium.pack(fmt, ...) end
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

json = {}
---@return string
function json.encode(value) end
---@return any
function json.decode(text) end
