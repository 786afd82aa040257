/* provium repl PROFILE [--name N]: boots one VM and reads Lua with readline.
 * Each chunk is tried as an expression first, then as a statement; a chunk
 * that is incomplete (a `for ... do` without its `end`) continues on the next
 * line, as in lua5.4. The VM is shut down when the input ends.
 *
 * Ctrl-C interrupts the running call only. QEMU is a child in the REPL's
 * process group, so a terminal-generated SIGINT would kill it too; the REPL
 * therefore turns the terminal's interrupt character off and reads ^C itself:
 * at the prompt readline's ^C binding drops the line, and while a chunk runs
 * a watcher thread reads the terminal and raises SIGINT in the REPL alone. The
 * SIGINT handler (also reached by `kill -INT` of the REPL's pid) makes every
 * wait for the guest give up at once and stops Lua code with a hook. */
#include <errno.h>
#include <lauxlib.h>
#include <poll.h>
#include <pthread.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "../lua/lua_api.h"
#include "../util/util.h"
#include "../vmm/vm.h"
#include "tools.h"

/* ---- interruption ---- */

static lua_State *repl_L;
static vm_deadline *repl_deadline; /* the state's: every VM of it honours it */
static volatile sig_atomic_t interrupted;

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted");
}

/* Async-signal-safe: two stores and lua_sethook (which lua.c also calls from
 * its handler). A deadline in the past ends any wait for the guest agent
 * within its 200 ms poll slice; the hook stops Lua code. */
static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    if (repl_deadline)
        repl_deadline->ms = 1;
    if (repl_L)
        lua_sethook(repl_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* ---- the terminal ---- */

static bool tty;
static struct termios tio_orig, tio_repl; /* as found; with ^C as a plain character */
static bool tio_changed;

static void restore_terminal(void)
{
    if (tio_changed)
        tcsetattr(0, TCSANOW, &tio_orig);
}

static void setup_terminal(void)
{
    if (tcgetattr(0, &tio_orig) != 0)
        return;
    tio_repl = tio_orig;
    tio_repl.c_cc[VINTR] = _POSIX_VDISABLE; /* ^C reaches us, not the process group */
    if (tcsetattr(0, TCSANOW, &tio_repl) == 0) {
        tio_changed = true;
        atexit(restore_terminal);
    }
}

/* While a chunk runs, a thread reads the terminal unbuffered: ^C raises
 * SIGINT in this process; anything else typed ahead is kept for the next
 * prompt (a ^C discards what was typed before it). */
static pthread_t watcher;
static int watcher_stop[2] = {-1, -1};
static char typeahead[512];
static size_t typeahead_len;

static void *watch_terminal(void *arg)
{
    pthread_t main_thread = *(pthread_t *)arg;
    for (;;) {
        struct pollfd p[2] = {{0, POLLIN, 0}, {watcher_stop[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            break; /* hangup: nothing more to read */
        char buf[64];
        ssize_t n = read(0, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == 3) {
                typeahead_len = 0;
                pthread_kill(main_thread, SIGINT);
            } else if (typeahead_len < sizeof(typeahead)) {
                typeahead[typeahead_len++] = buf[i];
            }
        }
    }
    return NULL;
}

static pthread_t main_thread_id;

static bool watch_start(void)
{
    if (!tio_changed || pipe(watcher_stop) != 0)
        return false;
    struct termios raw = tio_repl;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    tcsetattr(0, TCSANOW, &raw);
    main_thread_id = pthread_self();
    /* the watcher never takes SIGINT itself */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(&watcher, NULL, watch_terminal, &main_thread_id);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        close(watcher_stop[0]);
        close(watcher_stop[1]);
        tcsetattr(0, TCSANOW, &tio_repl);
        return false;
    }
    return true;
}

static void watch_stop(void)
{
    if (write(watcher_stop[1], "x", 1) < 0) {
        /* cannot happen with a fresh pipe; the join below would then hang */
    }
    pthread_join(watcher, NULL);
    close(watcher_stop[0]);
    close(watcher_stop[1]);
    tcsetattr(0, TCSANOW, &tio_repl);
}

/* readline: input typed while the last chunk ran comes first */
static int stuff_typeahead(void)
{
    for (size_t i = 0; i < typeahead_len; i++)
        rl_stuff_char((unsigned char)typeahead[i]);
    typeahead_len = 0;
    return 0;
}

/* ^C at the prompt: drop the line (and a chunk being continued). */
static bool line_cancelled;

static int cancel_line(int count, int key)
{
    (void)count;
    (void)key;
    rl_replace_line("", 0);
    rl_point = rl_end = 0;
    line_cancelled = true;
    printf("^C\n");
    rl_done = 1;
    return 0;
}

/* ---- evaluation ---- */

/* `help`, `help()` and `help(obj)`: objects first, then the methods of one. */
static const char help_lua[] =
    "local text = [[\n"
    "Objects:\n"
    "  vm        the booted VM: vm:run(\"uname -a\").stdout, vm:read_file(path), vm:syscall(nr, ...)\n"
    "  provium   the API: provium:vm(name, profile) for another VM, provium:lab(name),\n"
    "            provium.fixture(name), provium.pack/unpack(fmt, ...)\n"
    "  json      json.encode(value), json.decode(text)\n"
    "Objects that calls return have methods too: a worker (vm:spawn_worker{}), a process\n"
    "(vm:run_async), a file (vm:open_file), a stream, a clock (vm:clock()), a snapshot,\n"
    "a console (vm:console()), a lab.\n"
    "help(obj) lists the methods of obj (e.g. help(vm), help(provium), help(vm:clock()));\n"
    "docs/lua-api.md describes every call. Ctrl-C interrupts a call, Ctrl-D quits.]]\n"
    "local function methods(obj)\n"
    "  local names, seen, visited, t = {}, {}, {}, obj\n"
    "  if type(obj) ~= 'table' then\n"
    "    local mt = debug.getmetatable(obj)\n"
    "    t = mt and mt.__index\n"
    "  end\n"
    "  while type(t) == 'table' and not visited[t] do\n"
    "    visited[t] = true\n"
    "    for k, v in pairs(t) do\n"
    "      if type(k) == 'string' and type(v) == 'function' and k:sub(1, 2) ~= '__' and not seen[k] then\n"
    "        seen[k] = true; names[#names + 1] = k\n"
    "      end\n"
    "    end\n"
    "    local mt = debug.getmetatable(t)\n"
    "    t = mt and (type(mt.__index) == 'table' and mt.__index or (t ~= mt and mt) or nil)\n"
    "  end\n"
    "  table.sort(names)\n"
    "  return names\n"
    "end\n"
    "local help = setmetatable({}, {\n"
    "  __tostring = function() return text end,\n"
    "  __call = function(_, obj)\n"
    "    if obj == nil then print(text) return end\n"
    "    local names = methods(obj)\n"
    "    if #names == 0 then print(tostring(obj) .. ' has no methods') return end\n"
    "    print(tostring(obj) .. ': ' .. table.concat(names, ', '))\n"
    "  end,\n"
    "})\n"
    "rawset(_G, 'help', help)\n";

/* Prints the values a chunk produced: what has a __tostring as itself, other
 * tables as JSON when possible. */
static void print_results(lua_State *L, int base)
{
    int n = lua_gettop(L) - base;
    for (int i = 1; i <= n; i++) {
        int idx = base + i;
        if (lua_istable(L, idx) && luaL_getmetafield(L, idx, "__tostring") == LUA_TNIL) {
            char err[PV_ERR_MAX];
            char *js = pv_lua_to_json_lossy(L, idx, err, sizeof(err));
            if (js) {
                printf("%s%s", i > 1 ? "\t" : "", js);
                free(js);
                continue;
            }
        } else if (lua_istable(L, idx)) {
            lua_pop(L, 1); /* the __tostring */
        }
        printf("%s%s", i > 1 ? "\t" : "", luaL_tolstring(L, idx, NULL));
        lua_pop(L, 1);
    }
    if (n > 0)
        printf("\n");
    lua_settop(L, base);
}

/* Compiles a chunk: as `return CHUNK` first (so `1+1` prints 2), else as
 * statements. Returns LUA_OK with the function pushed, 1 when the chunk is
 * incomplete and needs more lines, or an error (message pushed). */
static int compile(lua_State *L, const char *chunk)
{
    int base = lua_gettop(L);
    char *expr = xasprintf("return %s;", chunk);
    int rc = luaL_loadbuffer(L, expr, strlen(expr), "=repl");
    free(expr);
    if (rc == LUA_OK)
        return rc;
    lua_settop(L, base);
    rc = luaL_loadbuffer(L, chunk, strlen(chunk), "=repl");
    if (rc == LUA_ERRSYNTAX) {
        size_t len;
        const char *msg = lua_tolstring(L, -1, &len);
        static const char eof[] = "<eof>";
        if (len >= sizeof(eof) - 1 && strcmp(msg + len - (sizeof(eof) - 1), eof) == 0) {
            lua_settop(L, base);
            return 1;
        }
    }
    return rc;
}

/* Runs the compiled chunk on the stack; Ctrl-C interrupts it. */
static int run_chunk(lua_State *L)
{
    int base = lua_gettop(L) - 1;
    interrupted = 0;
    repl_deadline->ms = 0;
    lua_sethook(L, NULL, 0, 0);
    bool watching = watch_start();
    int rc = lua_pcall(L, 0, LUA_MULTRET, 0);
    if (watching)
        watch_stop();
    lua_sethook(L, NULL, 0, 0);
    repl_deadline->ms = 0;
    fflush(stdout);
    if (rc != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (interrupted) {
            /* the waits gave up because of the deadline set by Ctrl-C; their
             * own wording ("test timeout") would mislead here */
            fprintf(stderr, "interrupted: the call was abandoned (a command it started in the guest may still "
                            "run); the VM stays usable\n");
            if (msg && !strstr(msg, "gave up waiting") && !strstr(msg, "interrupted"))
                fprintf(stderr, "error: %s\n", msg);
        } else {
            fprintf(stderr, "error: %s\n", msg ? msg : "(error object is not a string)");
        }
        lua_settop(L, base);
        return 1;
    }
    if (interrupted)
        fprintf(stderr, "interrupted (the call had already finished)\n");
    print_results(L, base);
    return 0;
}

static int boot_vm(lua_State *L, const char *profile, const char *name)
{
    lua_getglobal(L, "provium");
    lua_getfield(L, -1, "vm");
    lua_pushvalue(L, -2);
    lua_pushstring(L, name);
    lua_pushstring(L, profile);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        fprintf(stderr, "provium repl: %s\n", lua_tostring(L, -1));
        return -1;
    }
    lua_getfield(L, -1, "boot");
    lua_pushvalue(L, -2);
    fprintf(stderr, "booting '%s' (profile '%s')...\n", name, profile);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "provium repl: %s\n", lua_tostring(L, -1));
        return -1;
    }
    lua_setglobal(L, "vm");
    lua_settop(L, 0);
    return 0;
}

int repl_main(const pv_config *cfg, const char *profile, const char *name)
{
    if (!name)
        name = "repl";
    /* scratch directory for the VM's sockets: under TMPDIR as for `provium
     * run` (unix socket paths are short, so a long TMPDIR is ignored) */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 40)
        tmp = "/tmp";
    char *tmpl = xasprintf("%s/provium-XXXXXX", tmp);
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "provium repl: cannot create a scratch directory in %s: %s\n", tmp, strerror(errno));
        free(tmpl);
        return 2;
    }
    pv_lua_env env = {cfg, tmpl, NULL};
    char err[PV_ERR_MAX];
    lua_State *L = pv_lua_new(&env, err, sizeof(err));
    if (!L) {
        fprintf(stderr, "provium repl: %s\n", err);
        rm_rf(tmpl);
        free(tmpl);
        return 2;
    }
    if (luaL_dostring(L, help_lua) != LUA_OK) {
        fprintf(stderr, "provium repl: internal error in help: %s\n", lua_tostring(L, -1));
        lua_close(L);
        rm_rf(tmpl);
        free(tmpl);
        return 2;
    }
    tty = isatty(0);
    if (tty)
        setup_terminal();
    repl_deadline = pv_lua_deadline(L);
    repl_L = L;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: a blocked poll returns at once */
    rl_catch_signals = 0;
    rl_startup_hook = stuff_typeahead;
    if (tty)
        rl_bind_key(3, cancel_line);

    int rc = 0;
    if (boot_vm(L, profile, name) != 0) {
        rc = 2;
        goto out;
    }
    fprintf(stderr, "the VM is `vm` (try vm:run(\"uname -a\").stdout); `help` lists what there is; Ctrl-C "
                    "interrupts a call, Ctrl-D quits\n");
    char *chunk = NULL; /* lines of an incomplete chunk so far */
    for (;;) {
        line_cancelled = false;
        char *line = readline(!tty ? "" : chunk ? "provium>> " : "provium> ");
        if (!line) {
            if (chunk) {
                /* the input ended inside a chunk: report it as lua5.4 would */
                if (compile(L, chunk) == 1)
                    fprintf(stderr, "error: the input ended inside an unfinished chunk:\n%s\n", chunk);
                else
                    lua_settop(L, 0);
                if (!tty)
                    rc = 1;
                free(chunk);
            }
            break;
        }
        if (line_cancelled) {
            free(line);
            free(chunk);
            chunk = NULL;
            continue;
        }
        if (!chunk && !*line) {
            free(line);
            continue;
        }
        char *text = chunk ? xasprintf("%s\n%s", chunk, line) : xstrdup(line);
        free(line);
        free(chunk);
        chunk = NULL;
        int c = compile(L, text);
        if (c == 1) {
            chunk = text; /* continue on the next line */
            continue;
        }
        add_history(text);
        if (c != LUA_OK) {
            fprintf(stderr, "error: %s\n", lua_tostring(L, -1));
            lua_settop(L, 0);
            if (!tty)
                rc = 1;
        } else if (run_chunk(L) != 0 && !tty) {
            rc = 1; /* scripted input: report failures in the exit status */
        }
        free(text);
        fflush(stdout);
    }
    lua_getglobal(L, "vm");
    if (!lua_isnil(L, -1)) {
        lua_getfield(L, -1, "close");
        lua_pushvalue(L, -2);
        lua_pcall(L, 1, 0, 0);
    }
out:
    signal(SIGINT, SIG_DFL);
    repl_L = NULL;
    repl_deadline = NULL;
    pv_lua_kill_all_vms();
    lua_close(L);
    rm_rf(tmpl);
    free(tmpl);
    restore_terminal();
    return rc;
}
