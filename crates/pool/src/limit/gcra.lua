-- GCRA on Redis's clock for one deployment's requests and tokens, checked together and
-- charged together: a refused call takes nothing.
--
-- KEYS[1], KEYS[2]: the request and token buckets, each the theoretical arrival time
--   (microseconds of Redis's TIME) of a full minute's use; gone once the bucket is full.
-- ARGV[1], ARGV[2]: requests and tokens per minute (0: no limit). ARGV[3]: the tokens.
-- Returns {0, 0} when admitted, else {1, wait} (requests) or {2, wait} (tokens), the wait
-- in microseconds. A call of more tokens than the limit waits for a full bucket and takes it.

-- TIME before a write needs effects replication before Redis 5 (later, always on).
if redis.replicate_commands then
    redis.replicate_commands()
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local period = 60000000

-- The bucket's new arrival time if `n` of `limit` a minute fit now, else nil and the wait.
local function take(key, limit, n)
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then
        tat = now
    end
    local new_tat = tat + n * period / limit
    local wait = new_tat - period - now
    if wait > 0 then
        return nil, math.ceil(wait)
    end
    return new_tat, 0
end

local requests = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local token_tat
if tokens > 0 and n > 0 then
    local wait
    token_tat, wait = take(KEYS[2], tokens, math.min(n, tokens))
    if not token_tat then
        return {2, wait}
    end
end
local request_tat
if requests > 0 then
    local wait
    request_tat, wait = take(KEYS[1], requests, 1)
    if not request_tat then
        return {1, wait}
    end
end

-- Whole microseconds, rounded up: never more room than the limit.
local function store(key, tat)
    local at = math.ceil(tat)
    redis.call('SET', key, string.format('%.0f', at), 'PX', math.ceil((at - now) / 1000) + 1)
end
if token_tat then
    store(KEYS[2], token_tat)
end
if request_tat then
    store(KEYS[1], request_tat)
end
return {0, 0}
