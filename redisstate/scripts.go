package redisstate

import "github.com/redis/go-redis/v9"

// The store's Lua scripts. Each runs atomically on one Redis node, reads
// time from Redis's own clock (TIME) and never from a replica's, and takes
// every key it touches from KEYS, so that it works in Redis Cluster: a
// breaker key's four Redis keys share one hash tag, hence one slot.
//
// Anything they read may have been written by someone else: a key of the
// wrong type is deleted, a field that does not parse is dropped, a hold
// that does not parse is deleted.

// heartbeat notes that a replica is live and counts the live ones.
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
return redis.call('ZCARD', KEYS[1])
`)

// syncKey is one breaker key's part of a sync: it adds the replica's
// outcomes to the fleet's window, makes the hold a trip asks for, settles a
// probe, grants a probe lease, applies a manual change, and returns what the
// fleet holds for the key.
//
//	KEYS: win (hash: "<bucket>:<replica>:s|f" -> count)
//	      hold (hash: phase open|closed, until, nominal, gen, reason, replica, probed, failed, f, s, failing)
//	      leases (hash: token -> expiry, ms)
//	      ctl (hash: v, kind, by, replica, until)
//	ARGV: see argument names in Store.keyArgs.
//
// It returns a flat array that Store.parse reads, in this order: the
// window's successes, failures and failing replicas; the hold (present,
// gen, phase, ms left, nominal, probed, reason, replica, failures,
// successes, failing); the granted lease token; the manual change (version,
// kind, ms left: 0 until release, -1 run out; by, replica).
var syncKey = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stamp = tonumber(t[1]) * 1000000 + tonumber(t[2])
local WIN, HOLD, LEASES, CTL = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
for i = 1, 4 do
  local ty = redis.call('TYPE', KEYS[i])['ok']
  if ty ~= 'none' and ty ~= 'hash' then redis.call('DEL', KEYS[i]) end
end
local replica = ARGV[1]
local window, buckets = tonumber(ARGV[2]), tonumber(ARGV[3])
local channel, key = ARGV[24], ARGV[25]
local changed = false
local keep = 600000 -- how long state outlives its last use, ms

local function hash(k)
  local raw = redis.call('HGETALL', k)
  local h = {}
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  return h
end

local function readHold()
  local h = hash(HOLD)
  if next(h) == nil then return nil end
  local gen, untl, nominal = tonumber(h.gen), tonumber(h['until']), tonumber(h.nominal)
  local probed = tonumber(h.probed or '0')
  if gen == nil or gen <= 0 or untl == nil or nominal == nil or probed == nil or probed ~= math.floor(probed) or
      (h.phase ~= 'open' and h.phase ~= 'closed') then
    redis.call('DEL', HOLD, LEASES)
    return nil
  end
  h.gen, h['until'], h.nominal = gen, untl, nominal
  h.probed = probed
  return h
end

local function open(ms, nominal, reason, f, s, failing)
  redis.call('DEL', HOLD, LEASES)
  redis.call('HSET', HOLD, 'phase', 'open', 'until', now + ms, 'nominal', nominal, 'gen', stamp,
    'reason', reason, 'replica', replica, 'probed', 0, 'f', f, 's', s, 'failing', failing)
  redis.call('PEXPIRE', HOLD, ms + keep)
  changed = true
end

-- The window: drop fields that have left it (or do not parse), then add
-- this replica's outcomes.
local width = math.max(1, math.floor(window / buckets))
local cur = math.floor(now / width)
local bucket = string.format('%d', cur)
local ds, df = tonumber(ARGV[4]), tonumber(ARGV[5])
local S, F, nfailing, failing, stale = 0, 0, 0, {}, {}
local raw = redis.call('HGETALL', WIN)
for i = 1, #raw, 2 do
  local b, r, kind = string.match(raw[i], '^(%d+):(.+):([sf])$')
  local n = tonumber(raw[i + 1])
  b = tonumber(b)
  if b == nil or n == nil or n < 0 or n ~= math.floor(n) or b <= cur - buckets or b > cur then
    stale[#stale + 1] = raw[i]
  elseif kind == 's' then
    S = S + n
  else
    F = F + n
    if n > 0 and not failing[r] then failing[r] = true; nfailing = nfailing + 1 end
  end
end
for i = 1, #stale, 1000 do
  redis.call('HDEL', WIN, unpack(stale, i, math.min(i + 999, #stale)))
end
if ds > 0 then redis.call('HINCRBY', WIN, bucket .. ':' .. replica .. ':s', ds); S = S + ds end
if df > 0 then
  redis.call('HINCRBY', WIN, bucket .. ':' .. replica .. ':f', df)
  F = F + df
  if not failing[replica] then failing[replica] = true; nfailing = nfailing + 1 end
end
if ds + df > 0 then redis.call('PEXPIRE', WIN, 2 * window) end

local hold = readHold()

-- A manual change that does not parse is dropped.
local cv0 = redis.call('HGET', CTL, 'v')
if cv0 and (tonumber(cv0) == nil or tonumber(cv0) ~= math.floor(tonumber(cv0))) then redis.call('DEL', CTL) end

-- A manual change.
if ARGV[21] ~= '' then
  local kind, dur = ARGV[21], tonumber(ARGV[22])
  local v = redis.call('HINCRBY', CTL, 'v', 1)
  local untl = 0
  if kind == 'force_open' and dur > 0 then untl = now + dur end
  redis.call('HSET', CTL, 'kind', kind, 'by', ARGV[23], 'replica', replica, 'until', untl)
  if kind == 'reset' then
    redis.call('DEL', WIN, HOLD, LEASES)
    S, F, nfailing, hold = 0, 0, 0, nil
  elseif kind == 'probe' and hold ~= nil and hold.phase == 'open' and hold['until'] > now then
    redis.call('HSET', HOLD, 'until', now) -- the cooldown ends now: leases are granted
    hold['until'] = now
  end
  changed = true
end

-- A trip, unless the fleet holds the key already.
if ARGV[6] == '1' and (hold == nil or hold.phase == 'closed') then
  open(tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], ARGV[10], ARGV[11], ARGV[12])
  hold = readHold()
end

-- A probe's result, if its lease still stands.
if ARGV[15] == '1' and hold ~= nil and hold.phase == 'open' and hold.gen == tonumber(ARGV[16]) and
    redis.call('HDEL', LEASES, ARGV[17]) == 1 then
  local outcome = ARGV[18]
  local slots, need = tonumber(ARGV[14]), tonumber(ARGV[26])
  if outcome == 's' then
    local probed = redis.call('HINCRBY', HOLD, 'probed', 1)
    if probed >= need then
      redis.call('HSET', HOLD, 'phase', 'closed')
      redis.call('DEL', LEASES, WIN)
      redis.call('PEXPIRE', HOLD, 60000)
      S, F, nfailing = 0, 0, 0
    end
    changed = true
  elseif outcome == 'f' then
    -- A failure reopens the key once too few probes are left to succeed.
    if redis.call('HINCRBY', HOLD, 'failed', 1) > slots - need then
      open(tonumber(ARGV[19]), tonumber(ARGV[20]), 'probe_failed', 0, 0, 0)
    else
      changed = true
    end
  end
  hold = readHold()
end

-- A probe lease: one of the hold's slots, once its cooldown is over.
local lease = ''
local leaseFor = tonumber(ARGV[13])
if leaseFor > 0 and hold ~= nil and hold.phase == 'open' and now >= hold['until'] then
  local held = 0
  local leases = hash(LEASES)
  for tok, exp in pairs(leases) do
    local e = tonumber(exp)
    if e == nil or e < now then redis.call('HDEL', LEASES, tok) else held = held + 1 end
  end
  if held + hold.probed + (tonumber(hold.failed) or 0) < tonumber(ARGV[14]) then
    lease = replica .. '/' .. string.format('%d', stamp)
    redis.call('HSET', LEASES, lease, now + leaseFor)
    redis.call('PEXPIRE', LEASES, leaseFor + keep)
    redis.call('PEXPIRE', HOLD, leaseFor + keep)
  end
end

-- The latest manual change, kept while replicas read it.
local ctl = hash(CTL)
local cv = tonumber(ctl.v) or 0
local cleft, cuntil = 0, tonumber(ctl['until']) or 0
if cv > 0 then
  if cuntil > 0 then
    cleft = cuntil - now
    if cleft <= 0 then cleft = -1 end
  end
  redis.call('PEXPIRE', CTL, keep + math.max(cleft, 0))
end

if changed then redis.call('PUBLISH', channel, key) end

local out = {S, F, nfailing}
if hold == nil then
  for _, v in ipairs({0, 0, '', 0, 0, 0, '', '', 0, 0, 0}) do out[#out + 1] = v end
else
  for _, v in ipairs({1, hold.gen, hold.phase, hold['until'] - now, hold.nominal, hold.probed,
      hold.reason or '', hold.replica or '', tonumber(hold.f) or 0, tonumber(hold.s) or 0,
      tonumber(hold.failing) or 0}) do
    out[#out + 1] = v
  end
end
out[#out + 1] = lease
for _, v in ipairs({cv, ctl.kind or '', cleft, ctl.by or '', ctl.replica or ''}) do out[#out + 1] = v end
return out
`)
