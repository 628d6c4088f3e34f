package redisstate

import "github.com/redis/go-redis/v9"

// The store's Lua scripts. Each runs atomically on one Redis node, reads
// time from Redis's own clock (TIME) and never from a replica's, and takes
// every key it touches from KEYS, so that it works in Redis Cluster: the
// Redis keys of the breaker keys that one call carries share one hash tag,
// hence one slot.
//
// Anything they read may have been written by someone else, or lost to an
// eviction: a key of the wrong type is deleted, a number that is not a
// finite integer within its bounds makes its record be deleted, and a field
// that does not parse is dropped.

// heartbeat notes that a replica is live, and returns the live replicas'
// names, the server's run id (which changes when a failover or a restart
// puts another server behind the address) and its clock, in microseconds,
// by which the replica dates its manual changes.
//
//	KEYS: replicas (a sorted set: replica -> Redis time of its last sync, ms)
//	ARGV: replica, live (ms)
var heartbeat = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ty = redis.call('TYPE', KEYS[1])['ok']
if ty ~= 'none' and ty ~= 'zset' then redis.call('DEL', KEYS[1]) end
local live = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - live))
redis.call('PEXPIRE', KEYS[1], 2 * live)
local names = redis.call('ZRANGE', KEYS[1], 0, 999)
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
return {run, names, tonumber(t[1]) * 1000000 + tonumber(t[2])}
`)

// syncKeys is a sync's part for the breaker keys of one shard: for each,
// it adds what the replica's totals gained to the fleet's window, makes the
// hold a trip asks for, settles a probe, grants a probe lease, applies a
// manual command, and returns what the fleet holds for the key. A
// replica's trips, probe results and commands are applied once per sync
// sequence number, however often a client sends the same sync.
//
//	KEYS, per group (the keys of one shard): first, the replica's record in the shard
//	                            (hash: breaker key -> "<incarnation> <successes> <failures>",
//	                             "" -> the number of the last sync applied);
//	      then per breaker key: win  (hash: "<bucket>:s" and "<bucket>:f" -> the fleet's counts;
//	                             "<bucket>:r:<replica>" -> that replica's failures)
//	                       hold (hash: phase open|closed, until (ms), nominal (ms), gen (us), reason,
//	                             replica, probed, failed, f, s, failing)
//	                       leases (hash: token -> expiry, ms)
//	                       cmd  (hash: at (us), kind, for (ms; 0: until released), by, replica)
//	ARGV: replica, seq, channel, the live replicas' names (each followed by
//	      a newline), the number of groups, the number of keys in each,
//	      then 31 values per breaker key (see keyArgs).
//
// It returns, per breaker key, 20 values that Store.parse reads: the
// window's successes, failures and failing live replicas; the hold
// (present, gen, phase, ms left, nominal, probed, reason, replica,
// failures, successes, failing); the lease token granted; the latest
// command (at, kind, ms left: 0 until released, -1 run out; by, replica).
var syncKeys = redis.NewScript(`
local t = redis.call('TIME')
local nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(nowUs / 1000)
local replica, seq, channel = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local live = nil -- the live replicas, read when a window holds failures
local function isLive(r)
  if live == nil then
    live = {}
    for name in string.gmatch(ARGV[4], '([^\n]+)\n') do live[name] = true end
  end
  return live[r]
end
local ngroups = tonumber(ARGV[5])
local base = 5 + ngroups
local per = 31
local keep = 600000 -- how long state outlives its last use, ms
local maxFor = 7 * 24 * 3600000 -- the longest ForceOpen a command may hold, ms

-- int returns v as an integer in [lo, hi], or nil: NaN, infinities and
-- huge values are not numbers here.
local function int(v, lo, hi)
  local n = tonumber(v)
  if n == nil or n ~= n or n < lo or n > hi or n ~= math.floor(n) then return nil end
  return n
end

local function hash(k)
  local raw = redis.pcall('HGETALL', k)
  if raw.err then redis.call('DEL', k); return {} end
  local h = {}
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  return h
end

local out = {}
local announce = {}
local ki, ordinal = 1, 0
for g = 1, ngroups do
  -- A group: the keys of one shard, and what this replica sent before of
  -- each, read at once with the last sync applied. A sync not applied yet
  -- is fresh: its requests count, its trips, probe results and commands
  -- apply.
  local REPS, n = KEYS[ki], tonumber(ARGV[5 + g])
  local fields = {''}
  for i = 1, n do fields[i + 1] = ARGV[base + per * (ordinal + i - 1) + 1] end
  local recs = redis.pcall('HMGET', REPS, unpack(fields))
  if recs.err then redis.call('DEL', REPS); recs = {} end
  local pseq = int(recs[1], 0, 2^53) or -1
  local fresh = seq > pseq
  local written = {'', math.max(seq, pseq)}

  for i = 1, n do
    local WIN, HOLD, LEASES, CMD = KEYS[ki + 4*i - 3], KEYS[ki + 4*i - 2], KEYS[ki + 4*i - 1], KEYS[ki + 4*i]
    local a = base + per * (ordinal + i - 1)
    local key = ARGV[a + 1]
    local window, buckets = int(ARGV[a + 2], 1, 86400000) or 10000, int(ARGV[a + 3], 1, 1000) or 10
    local maxHold = int(ARGV[a + 27], 1, 86400000) or 300000
    local changed = false

    local prev = recs[i + 1]
    local pinc, ps, pf = '', 0, 0
    if prev then
      local a1, a2, a3 = string.match(prev, '^(%S+) (%d+) (%d+)$')
      if a1 then pinc, ps, pf = a1, tonumber(a2), tonumber(a3) end
    end
    local inc = ARGV[a + 4]
    local ts, tf = int(ARGV[a + 5], 0, 2^52) or ps, int(ARGV[a + 6], 0, 2^52) or pf
    -- What the totals gained since the store last heard of them, at most
    -- what the replica's own window holds. A replica the store has no record
    -- of adds its totals on its first sync, and nothing after (the store lost
    -- its data: they were counted already).
    local ds, df = 0, 0
    if inc == pinc then
      ds, df = math.max(ts - ps, 0), math.max(tf - pf, 0)
    elseif prev or ARGV[a + 28] == '1' then
      ds, df = ts, tf -- a new breaker, or a replica's first sync: it counts from zero
    end
    ds = math.min(ds, int(ARGV[a + 29], 0, 2^52) or 0)
    df = math.min(df, int(ARGV[a + 30], 0, 2^52) or 0)
    written[#written + 1] = key
    written[#written + 1] = inc .. ' ' .. ts .. ' ' .. tf

    -- The window: add what the totals gained, then sum the buckets still in
    -- it, and the live replicas that failed in them.
    local width = math.max(1, math.floor(window / buckets))
    local cur = math.floor(now / width)
    -- The window lives twice its span past its last new bucket.
    local newBucket = false
    if ds > 0 then newBucket = redis.call('HINCRBY', WIN, cur .. ':s', ds) == ds end
    if df > 0 then
      newBucket = redis.call('HINCRBY', WIN, cur .. ':f', df) == df or newBucket
      redis.call('HINCRBY', WIN, cur .. ':r:' .. replica, df)
    end
    if newBucket then redis.call('PEXPIRE', WIN, 2 * window) end
    local S, F, nfailing, failing, stale = 0, 0, 0, {}, {}
    local raw = redis.pcall('HGETALL', WIN)
    if raw.err then redis.call('DEL', WIN); raw = {} end
    for j = 1, #raw, 2 do
      local b, rest = string.match(raw[j], '^(%d+):(.+)$')
      local c = int(raw[j + 1], 0, 2^52)
      b = int(b, 0, 2^52)
      if b == nil or c == nil or b <= cur - buckets or b > cur then
        stale[#stale + 1] = raw[j]
      elseif rest == 's' then
        S = S + c
      elseif rest == 'f' then
        F = F + c
      else
        local r = string.match(rest, '^r:(.+)$')
        if r and c > 0 and not failing[r] and isLive(r) then failing[r] = true; nfailing = nfailing + 1 end
      end
    end
    for j = 1, #stale, 1000 do redis.call('HDEL', WIN, unpack(stale, j, math.min(j + 999, #stale))) end

    -- The hold, if it is one: bounded numbers, a cooldown no longer than
    -- maxHold from now, not past its lapse.
    local function readHold()
      local h = hash(HOLD)
      if next(h) == nil then return nil end
      local ok = (h.phase == 'open' or h.phase == 'closed')
      h.gen = int(h.gen, 1, nowUs)
      h['until'] = int(h['until'], 0, now + maxHold)
      h.nominal = int(h.nominal, 0, maxHold)
      h.probed = int(h.probed or '0', 0, 1000)
      h.failed = int(h.failed or '0', 0, 1000)
      if not ok or h.gen == nil or h['until'] == nil or h.nominal == nil or h.probed == nil or h.failed == nil or
          (h.phase == 'open' and now > h['until'] + 2 * maxHold) then
        redis.call('DEL', HOLD, LEASES)
        return nil
      end
      return h
    end
    local function open(ms, nominal, reason, f, s, nf)
      redis.call('DEL', HOLD, LEASES)
      redis.call('HSET', HOLD, 'phase', 'open', 'until', now + ms, 'nominal', nominal, 'gen', nowUs,
        'reason', reason, 'replica', replica, 'probed', 0, 'failed', 0, 'f', f, 's', s, 'failing', nf)
      redis.call('PEXPIRE', HOLD, ms + keep)
      changed = true
    end
    -- Most keys have neither a hold nor a command: one call says so.
    local held = redis.call('EXISTS', HOLD, CMD) > 0
    local hold = held and readHold() or nil

    -- The latest command, if it is one.
    local cmd = held and hash(CMD) or {}
    if next(cmd) ~= nil then
      cmd.at, cmd['for'] = int(cmd.at, 0, nowUs), int(cmd['for'], 0, maxFor)
      local k = cmd.kind
      if cmd.at == nil or cmd['for'] == nil or not (k == 'force_open' or k == 'force_close' or k == 'release' or
          k == 'reset' or k == 'probe') then
        redis.call('DEL', CMD)
        cmd = {}
      end
    end
    -- A new command, dated when it was made on this server's clock (by
    -- the replica, from the clock's reading at an earlier sync and its own
    -- monotonic clock since), or else by how long ago it was made: one
    -- that a later command (by the fleet's order) or its own time has
    -- overtaken is dropped. A sync that reaches Redis late (a connection
    -- that waited out a partition) is dated when its change was made.
    local kind = ARGV[a + 23]
    if fresh and kind ~= '' then
      local dur, age = int(ARGV[a + 24], 0, maxFor) or 0, int(ARGV[a + 26], 0, 2^40) or 0
      local made = int(ARGV[a + 31], 1, 2^53)
      local at = made and math.min(made, nowUs) or (nowUs - age * 1000)
      local expired = kind == 'force_open' and dur > 0 and math.floor(at / 1000) + dur <= now
      if not expired and (cmd.at == nil or at > cmd.at) then
        redis.call('DEL', CMD)
        redis.call('HSET', CMD, 'at', at, 'kind', kind, 'for', dur, 'by', ARGV[a + 25], 'replica', replica)
        cmd = {at = at, kind = kind, ['for'] = dur, by = ARGV[a + 25], replica = replica}
        if kind == 'reset' then
          redis.call('DEL', WIN, HOLD, LEASES)
          S, F, nfailing, hold = 0, 0, 0, nil
        elseif kind == 'probe' and hold ~= nil and hold.phase == 'open' and hold['until'] > now then
          redis.call('HSET', HOLD, 'until', now) -- the cooldown ends now: leases are granted
          hold['until'] = now
        end
        changed = true
      end
    end
    if cmd.at ~= nil then
      local left = 0
      if cmd['for'] > 0 then left = math.floor(cmd.at / 1000) + cmd['for'] - now end
      redis.call('PEXPIRE', CMD, keep + math.max(left, 0))
    end

    -- A trip, unless the fleet holds the key already.
    if fresh and ARGV[a + 7] == '1' and (hold == nil or hold.phase == 'closed') then
      open(int(ARGV[a + 8], 1, maxHold) or maxHold, int(ARGV[a + 9], 0, maxHold) or 0, ARGV[a + 10],
        int(ARGV[a + 11], 0, 2^52) or 0, int(ARGV[a + 12], 0, 2^52) or 0, int(ARGV[a + 13], 0, 2^20) or 0)
      hold = readHold()
    end

    -- A probe's result, if its lease still stands.
    local slots, need = int(ARGV[a + 15], 1, 1000) or 1, int(ARGV[a + 16], 1, 1000) or 1
    need = math.min(need, slots)
    if ARGV[a + 17] == '1' and hold ~= nil and hold.phase == 'open' and hold.gen == tonumber(ARGV[a + 18]) and
        redis.call('HDEL', LEASES, ARGV[a + 19]) == 1 then
      local outcome = ARGV[a + 20]
      if outcome == 's' then
        if redis.call('HINCRBY', HOLD, 'probed', 1) >= need then
          redis.call('HSET', HOLD, 'phase', 'closed')
          redis.call('DEL', LEASES, WIN)
          redis.call('PEXPIRE', HOLD, 60000)
          S, F, nfailing = 0, 0, 0
        end
        changed = true
      elseif outcome == 'f' then
        -- A failure reopens the key once too few probes are left to succeed.
        if redis.call('HINCRBY', HOLD, 'failed', 1) > slots - need then
          open(int(ARGV[a + 21], 1, maxHold) or maxHold, int(ARGV[a + 22], 0, maxHold) or 0, 'probe_failed', 0, 0, 0)
        else
          changed = true
        end
      end
      hold = readHold()
    end

    -- A probe lease: one of the hold's slots, once its cooldown is over. A
    -- replica that sends the same sync again gets the lease it was granted.
    local lease = ''
    local leaseFor = int(ARGV[a + 14], 0, maxHold) or 0
    local token = replica .. '/' .. seq
    if leaseFor > 0 and hold ~= nil and hold.phase == 'open' and now >= hold['until'] then
      if not fresh and redis.call('HEXISTS', LEASES, token) == 1 then
        lease = token
      else
        local held = 0
        for tok, exp in pairs(hash(LEASES)) do
          local e = int(exp, 0, now + 2 * maxHold)
          if e == nil or e < now then redis.call('HDEL', LEASES, tok) else held = held + 1 end
        end
        if fresh and held + hold.probed + hold.failed < slots then
          lease = token
          redis.call('HSET', LEASES, lease, now + leaseFor)
          redis.call('PEXPIRE', LEASES, leaseFor + keep)
          redis.call('PEXPIRE', HOLD, leaseFor + keep)
        end
      end
    end

    if changed then announce[#announce + 1] = key end

    local function num(v) return tonumber(v) and int(v, 0, 2^52) or 0 end
    out[#out + 1] = S
    out[#out + 1] = F
    out[#out + 1] = nfailing
    if hold == nil then
      for _, v in ipairs({0, 0, '', 0, 0, 0, '', '', 0, 0, 0}) do out[#out + 1] = v end
    else
      for _, v in ipairs({1, hold.gen, hold.phase, hold['until'] - now, hold.nominal, hold.probed,
          hold.reason or '', hold.replica or '', num(hold.f), num(hold.s), num(hold.failing)}) do
        out[#out + 1] = v
      end
    end
    out[#out + 1] = lease
    if cmd.at == nil then
      for _, v in ipairs({0, '', 0, '', ''}) do out[#out + 1] = v end
    else
      local left = 0
      if cmd['for'] > 0 then
        left = math.floor(cmd.at / 1000) + cmd['for'] - now
        if left <= 0 then left = -1 end
      end
      for _, v in ipairs({cmd.at, cmd.kind, left, cmd.by or '', cmd.replica or ''}) do out[#out + 1] = v end
    end
  end
  for j = 1, #written, 1000 do redis.call('HSET', REPS, unpack(written, j, math.min(j + 999, #written))) end
  redis.call('PEXPIRE', REPS, keep)
  ki, ordinal = ki + 1 + 4 * n, ordinal + n
end
for _, key in ipairs(announce) do redis.call('PUBLISH', channel, key) end
return out
`)
