/* json.encode / json.decode over jansson. A table whose keys are exactly
 * 1..n is an array; any other table is an object with string keys. Integers
 * stay integers (64-bit) both ways. The encoder's options travel in an
 * encoder struct passed down the recursion, never in a global: a metamethod
 * may raise in the middle of an encode, and nothing must stay set after it. */
#include <errno.h>
#include <jansson.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "../util/util.h"
#include "lua_api.h"

#define MAX_DEPTH 128

/* The jansson values an encode has made but not yet linked into their
 * parent. A metamethod (__index, __tostring) may raise in the middle of an
 * encode; this list lives in a Lua userdata, so the GC frees what the raise
 * left unlinked. Each level of nesting holds at most its container and one
 * finished child. */
#define PENDING_MT "provium.json_pending"
typedef struct {
    json_t *v[2 * MAX_DEPTH + 8];
    int n;
} pending;

/* One encode: its mode, where its error message goes, its pending values. */
typedef struct {
    bool lossy; /* escape bytes that are not UTF-8 (and NUL) instead of failing */
    char *err;
    size_t errlen;
    pending *held;
} encoder;

static json_t *hold(const encoder *enc, json_t *v)
{
    if (v)
        enc->held->v[enc->held->n++] = v;
    return v;
}

/* v must be the newest held value; returns it, no longer held. */
static json_t *release(const encoder *enc, json_t *v)
{
    enc->held->n--;
    return v;
}

static int pending_gc(lua_State *L)
{
    pending *p = luaL_checkudata(L, 1, PENDING_MT);
    while (p->n > 0)
        json_decref(p->v[--p->n]);
    return 0;
}

static json_t *to_json(lua_State *L, int idx, int depth, const encoder *enc);

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *p, size_t left)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!n || n > left || (n == 2 && p[0] < 0xC2))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    uint32_t cp = p[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++)
        cp = cp << 6 | (p[i] & 0x3F);
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* Copies s, writing each byte that is not part of valid UTF-8 (and NUL) as
 * the text \xNN. */
static char *utf8_escape(const char *s, size_t len)
{
    char *out = malloc(len * 4 + 1);
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = p[i] ? utf8_seq(p + i, len - i) : 0;
        if (n) {
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
        } else {
            o += (size_t)sprintf(out + o, "\\x%02X", p[i]);
            i++;
        }
    }
    out[o] = 0;
    return out;
}

static bool is_array(lua_State *L, int idx, size_t *len)
{
    size_t n = 0;
    lua_Integer max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return false;
        }
        if (lua_tointeger(L, -1) > max)
            max = lua_tointeger(L, -1);
        n++;
    }
    /* keys 1..max with gaps are still an array (gaps become null), as long
     * as the gaps do not dominate: {[1e9] = 1} must not become 1e9 nulls */
    *len = (size_t)max;
    return n > 0 && (size_t)max <= 4 * n + 64;
}

static json_t *array_to_json(lua_State *L, int idx, size_t n, int depth, const encoder *enc)
{
    json_t *a = hold(enc, json_array());
    for (size_t i = 1; i <= n; i++) {
        lua_geti(L, idx, (lua_Integer)i); /* nil in a gap: null */
        json_t *v = to_json(L, lua_gettop(L), depth + 1, enc);
        lua_pop(L, 1);
        if (!v) {
            json_decref(release(enc, a));
            return NULL;
        }
        json_array_append_new(a, v);
    }
    return release(enc, a);
}

static json_t *table_to_json(lua_State *L, int idx, int depth, const encoder *enc)
{
    size_t n;
    if (is_array(L, idx, &n))
        return array_to_json(L, idx, n, depth, enc);
    json_t *o = hold(enc, json_object());
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING && lua_type(L, -2) != LUA_TNUMBER) {
            snprintf(enc->err, enc->errlen, "json.encode: object keys must be strings or numbers, got %s",
                     luaL_typename(L, -2));
            lua_pop(L, 2);
            json_decref(release(enc, o));
            return NULL;
        }
        json_t *v = hold(enc, to_json(L, lua_gettop(L), depth + 1, enc));
        if (!v) {
            lua_pop(L, 2);
            json_decref(release(enc, o));
            return NULL;
        }
        /* numeric keys of a mixed table become strings; converting a copy
         * keeps lua_next's key intact */
        lua_pushvalue(L, -2);
        size_t klen;
        const char *key = luaL_tolstring(L, -1, &klen);
        bool plain = !memchr(key, 0, klen);
        release(enc, v); /* from here on nothing raises before v is linked or freed */
        if (enc->lossy && (!plain || json_object_set_new(o, key, v) != 0)) {
            /* reports: a key with NUL or bad UTF-8 is escaped, not dropped
             * (json_object_set_new consumed v on failure: encode it again) */
            if (plain)
                v = to_json(L, lua_gettop(L) - 2, depth + 1, enc);
            char *clean = utf8_escape(key, klen);
            json_object_set_new(o, clean, v);
            free(clean);
        } else if (!enc->lossy && (!plain || json_object_set_new(o, key, v) != 0)) {
            snprintf(enc->err, enc->errlen, "json.encode: object key is not valid UTF-8 or contains a NUL byte");
            if (!plain)
                json_decref(v);
            lua_pop(L, 3);
            json_decref(release(enc, o));
            return NULL;
        }
        lua_pop(L, 3);
    }
    return release(enc, o);
}

static json_t *to_json(lua_State *L, int idx, int depth, const encoder *enc)
{
    if (depth > MAX_DEPTH) {
        snprintf(enc->err, enc->errlen, "json.encode: nesting deeper than %d (cycle?)", MAX_DEPTH);
        return NULL;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_integer(lua_tointeger(L, idx));
        if (!isfinite(lua_tonumber(L, idx))) {
            snprintf(enc->err, enc->errlen, "json.encode: cannot encode NaN or infinity");
            return NULL;
        }
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        /* reports carry arbitrary guest bytes: escape NUL and what is not
         * UTF-8 instead of losing the whole report (the runner's parser
         * refuses \u0000) */
        json_t *v = enc->lossy && memchr(s, 0, len) ? NULL : json_stringn(s, len);
        if (!v && enc->lossy) {
            char *clean = utf8_escape(s, len);
            v = json_string(clean);
            free(clean);
        }
        if (!v)
            snprintf(enc->err, enc->errlen, "json.encode: string is not valid UTF-8");
        return v;
    }
    case LUA_TTABLE:
        luaL_checkstack(L, 4, "json.encode");
        return table_to_json(L, idx, depth, enc);
    default:
        snprintf(enc->err, enc->errlen, "json.encode: cannot encode a %s", luaL_typename(L, idx));
        return NULL;
    }
}

static char *encode(lua_State *L, int idx, encoder *enc)
{
    idx = lua_absindex(L, idx);
    enc->held = lua_newuserdatauv(L, sizeof(pending), 0);
    enc->held->n = 0;
    if (luaL_newmetatable(L, PENDING_MT)) {
        lua_pushcfunction(L, pending_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    json_t *v = to_json(L, idx, 0, enc);
    lua_pop(L, 1); /* the pending list, empty again */
    if (!v)
        return NULL;
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    return s;
}

char *pv_lua_to_json_lossy(lua_State *L, int idx, char *err, size_t errlen)
{
    return encode(L, idx, &(encoder){.lossy = true, .err = err, .errlen = errlen});
}

char *pv_lua_to_json(lua_State *L, int idx, char *err, size_t errlen)
{
    return encode(L, idx, &(encoder){.lossy = false, .err = err, .errlen = errlen});
}

static void push_json(lua_State *L, json_t *v)
{
    luaL_checkstack(L, 3, "json.decode");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            push_json(L, e);
            lua_setfield(L, -2, k);
        }
        break;
    }
    case JSON_ARRAY: {
        lua_createtable(L, (int)json_array_size(v), 0);
        for (size_t i = 0; i < json_array_size(v); i++) {
            push_json(L, json_array_get(v, i));
            lua_seti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
        lua_pushnil(L);
        break;
    }
}

static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    char err[PV_ERR_MAX];
    char *s = pv_lua_to_json(L, 1, err, sizeof(err));
    if (!s)
        return luaL_error(L, "%s", err);
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* jansson refuses integers above INT64_MAX. Lua's own tonumber() wraps
 * 0x8000000000000000..0xFFFFFFFFFFFFFFFF to negative integers; do the same
 * by rewriting such literals (outside strings) before parsing. */
static char *wrap_u64_literals(const char *s, size_t len, size_t *out_len)
{
    strbuf b;
    sb_init(&b);
    bool in_str = false;
    for (size_t i = 0; i < len;) {
        char c = s[i];
        if (in_str) {
            sb_add(&b, &c, 1);
            if (c == '\\' && i + 1 < len) {
                sb_add(&b, &s[i + 1], 1);
                i += 2;
                continue;
            }
            in_str = c != '"';
            i++;
            continue;
        }
        if (c == '"') {
            in_str = true;
            sb_add(&b, &c, 1);
            i++;
            continue;
        }
        if (c >= '0' && c <= '9') {
            size_t j = i;
            while (j < len && s[j] >= '0' && s[j] <= '9')
                j++;
            bool integer = j == len || (s[j] != '.' && s[j] != 'e' && s[j] != 'E');
            bool negative = i > 0 && s[i - 1] == '-';
            if (integer && !negative && j - i >= 19 && j - i <= 20) {
                char digits[24];
                memcpy(digits, s + i, j - i);
                digits[j - i] = 0;
                errno = 0;
                unsigned long long u = strtoull(digits, NULL, 10);
                if (errno == 0 && u > (unsigned long long)INT64_MAX) {
                    sb_addf(&b, "%lld", (long long)(int64_t)u);
                    i = j;
                    continue;
                }
            }
            sb_add(&b, s + i, j - i);
            i = j;
            continue;
        }
        sb_add(&b, &c, 1);
        i++;
    }
    *out_len = b.len;
    return sb_take(&b);
}

static int l_decode(lua_State *L)
{
    size_t raw_len;
    const char *raw = luaL_checklstring(L, 1, &raw_len);
    size_t len;
    char *s = wrap_u64_literals(raw, raw_len, &len);
    json_error_t je;
    json_t *v = json_loadb(s, len, JSON_DECODE_ANY, &je);
    free(s);
    if (!v)
        return luaL_error(L, "json.decode: %s at line %d column %d", je.text, je.line, je.column);
    push_json(L, v);
    json_decref(v);
    return 1;
}

void pv_lua_open_json(lua_State *L)
{
    static const luaL_Reg fns[] = {{"encode", l_encode}, {"decode", l_decode}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setglobal(L, "json");
}
