/* An EXEC request as what spawn_process needs: argv (PV_T_SHELL through
 * /bin/sh -c, or the PV_T_ARGV list), the environment (the agent's own, or
 * none with env_clear, plus the request's assignments) and the directory.
 * Shared by the main loop's jobs (exec.c) and thread workers. Every copy is
 * checked: out of memory is ENOMEM, never a NULL in argv. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static void free_strv(char **v)
{
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

static int fail(const char **why, int err, const char *text)
{
    *why = text;
    return err;
}

static int build_argv(exec_cmd *cmd, const pv_msg *m, const char **why)
{
    size_t n = pv_msg_count(m, PV_T_ARGV);
    bool shell = pv_msg_has(m, PV_T_SHELL);
    if (shell == (n > 0))
        return fail(why, EINVAL, "exactly one of shell or argv must be given");
    cmd->argv = calloc((shell ? 3 : n) + 1, sizeof(char *));
    if (!cmd->argv)
        return fail(why, ENOMEM, "out of memory");
    if (shell) {
        const pv_field *f = pv_msg_get(m, PV_T_SHELL);
        if (memchr(f->data, 0, f->len))
            return fail(why, EINVAL, "command contains a NUL byte");
        cmd->argv[0] = strdup("/bin/sh");
        cmd->argv[1] = cmd->argv[0] ? strdup("-c") : NULL;
        cmd->argv[2] = cmd->argv[1] ? pv_msg_strdup(m, PV_T_SHELL) : NULL;
        return cmd->argv[2] ? 0 : fail(why, ENOMEM, "out of memory");
    }
    size_t pos = 0, i = 0;
    const pv_field *f;
    while ((f = pv_msg_next(m, PV_T_ARGV, &pos))) {
        if (memchr(f->data, 0, f->len))
            return fail(why, EINVAL, "argument contains a NUL byte");
        if (!(cmd->argv[i++] = strndup((const char *)f->data, f->len)))
            return fail(why, ENOMEM, "out of memory");
    }
    return 0;
}

/* Adds (or, for a name already there, replaces) one NAME=value string. */
static void env_set(char **env, size_t *n, char *kv)
{
    size_t klen = (size_t)(strchr(kv, '=') - kv) + 1;
    for (size_t k = 0; k < *n; k++)
        if (strncmp(env[k], kv, klen) == 0) {
            free(env[k]);
            env[k] = kv;
            return;
        }
    env[(*n)++] = kv;
}

static int build_env(exec_cmd *cmd, const pv_msg *m, const char **why)
{
    extern char **environ;
    size_t base = 0;
    bool clear = pv_msg_u64(m, PV_T_ENV_CLEAR, 0) != 0;
    if (!clear)
        while (environ[base])
            base++;
    char **env = cmd->envp = calloc(base + pv_msg_count(m, PV_T_ENV) + 2, sizeof(char *));
    if (!env)
        return fail(why, ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < base; i++)
        if (!(env[n++] = strdup(environ[i])))
            return fail(why, ENOMEM, "out of memory");
    size_t pos = 0;
    const pv_field *f;
    while ((f = pv_msg_next(m, PV_T_ENV, &pos))) {
        char *kv = strndup((const char *)f->data, f->len);
        if (!kv)
            return fail(why, ENOMEM, "out of memory");
        if (!strchr(kv, '=')) { /* not an assignment (the host sends NAME=value only) */
            free(kv);
            continue;
        }
        env_set(env, &n, kv); /* a later assignment replaces an inherited one */
    }
    if (!clear) {
        bool has_path = false;
        for (size_t k = 0; k < n; k++)
            has_path |= strncmp(env[k], "PATH=", 5) == 0;
        if (!has_path && !(env[n++] = strdup(DEFAULT_PATH)))
            return fail(why, ENOMEM, "out of memory");
    }
    return 0;
}

int exec_cmd_parse(exec_cmd *cmd, const pv_msg *m, const char **why)
{
    memset(cmd, 0, sizeof(*cmd));
    int err = build_argv(cmd, m, why);
    if (!err)
        err = build_env(cmd, m, why);
    const pv_field *cwd = pv_msg_get(m, PV_T_CWD);
    if (!err && cwd) {
        if (memchr(cwd->data, 0, cwd->len))
            err = fail(why, EINVAL, "cwd contains a NUL byte");
        else if (!(cmd->cwd = pv_msg_strdup(m, PV_T_CWD)))
            err = fail(why, ENOMEM, "out of memory");
    }
    if (err)
        exec_cmd_free(cmd);
    return err;
}

void exec_cmd_free(exec_cmd *cmd)
{
    free_strv(cmd->argv);
    free_strv(cmd->envp);
    free(cmd->cwd);
    memset(cmd, 0, sizeof(*cmd));
}
