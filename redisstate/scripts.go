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

// heartbeat notes that a replica is live, and returns the server's run id
// (which changes when a failover or a restart puts another server behind
// the address), its clock in microseconds, by which the replica dates its
// manual changes, and the live replicas: their number, the version of their
// set (new whenever one joins or leaves) and their names if the replica's
// version is not that one. It renews the keys' TTLs when half of it has
// gone, not at every sync.
//
//	KEYS: replicas (a sorted set: replica -> Redis time of its last sync, ms),
//	      its version (a hash: v -> the version, n -> how many, e -> when the TTLs were renewed)
//	ARGV: replica, live (ms), the version of the set the replica knows
var heartbeat = redis.NewScript(`
local t = redis.call('TIME')
local nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(nowUs / 1000)
local live = tonumber(ARGV[2])
-- A key of the wrong type (written by someone else) is deleted.
local function call(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then
    local k = select(2, ...)
    redis.call('DEL', k)
    r = redis.call(...)
  end
  return r
end
local joined = call('ZADD', KEYS[1], now, ARGV[1])
local left = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - live))
local v = call('HMGET', KEYS[2], 'v', 'n', 'e')
local ver, n, e = v[1], tonumber(v[2]), tonumber(v[3])
local names = nil
if joined > 0 or left > 0 or not ver or not n then
  names = redis.call('ZRANGE', KEYS[1], 0, 9999)
  local new = tostring(nowUs)
  if new == ver then new = new .. '+' end
  ver, n = new, #names
  redis.call('HSET', KEYS[2], 'v', ver, 'n', n)
end
if not e or e > now or now - e > live / 2 then -- a renewal dated in the future is bad data
  redis.call('HSET', KEYS[2], 'e', now)
  redis.call('PEXPIRE', KEYS[1], 2 * live)
  redis.call('PEXPIRE', KEYS[2], 2 * live)
end
if ARGV[3] ~= ver and names == nil then names = redis.call('ZRANGE', KEYS[1], 0, 9999) end
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
return {run, names or false, nowUs, ver, n}
`)

// syncKeys is a sync's part for the breaker keys of some shards: for each
// key, it keeps the replica's report of its window, gathers the fleet's
// window when a trip is possible, makes the hold a trip asks for, settles a
// probe, grants a probe lease, applies a manual command, and returns what
// the fleet holds for the key. A replica's trips, probe results, commands
// and leases are applied once per sync, however often a client sends the
// same sync; a report never replaces a later one.
//
// A report costs a few commands, whatever the fleet's size: the window
// keeps its running sums beside the reports, and sums the reports again
// (one HGETALL) only when it starts to gather and, while it gathers, at
// most once a sync interval, for the trip's decision.
//
//	KEYS, per group (the keys of one shard): first, the replica's record in the shard
//	                            (hash: "" -> "<session> <seq>" of the last sync whose requests were applied);
//	      then the shard's index (hash: breaker key -> 1, for the keys the fleet holds something for);
//	      then per breaker key: win  (hash: "r:<replica>" -> "<session> <seq> <at> <successes> <failures> <over>",
//	                             the replica's report at Redis time at (ms); S, F, N, U: the sums of
//	                             successes, failures, reports with failures, reports over the rate;
//	                             g: when the gathering began (ms); C: the reports since; x: when the
//	                             reports were last summed again; e: when its TTL ends)
//	                       hold (hash: phase open|closed, until (ms), nominal (ms), gen (us), reason,
//	                             replica, probed, failed, f, s, failing)
//	                       leases (hash: token -> expiry, ms)
//	                       cmd  (hash: at (us), kind, for (ms; 0: until released), by, replica)
//	ARGV: replica, session, seq, channel, the live replicas' names (each followed by
//	      a newline), how many they are, the sync interval (ms), the number of groups,
//	      the number of keys in each, then 30 values per breaker key (see keyArgs).
//
// It returns, per breaker key, 7 values that Store.parse reads: the
// window's successes, failures and failing live replicas; flags (1:
// gathering, 2: complete); the hold, 0 if none, else (gen, phase, ms left,
// nominal, probed, reason, replica, failures, successes, failing); the
// lease token granted; the latest command, 0 if none, else (at, kind, ms
// left: 0 until released, -1 run out; by, replica).
var syncKeys = redis.NewScript(`
local t = redis.call('TIME')
local nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(nowUs / 1000)
local replica, session, seq, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local live = nil -- the live replicas, read when the reports are summed again
local function isLive(r)
  if live == nil then
    live = {}
    for name in string.gmatch(ARGV[5], '([^\n]+)\n') do live[name] = true end
  end
  return live[r]
end
local nlive, every, ngroups = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local base = 8 + ngroups
local per = 30
local keep = 600000 -- how long state outlives its last use, ms
local maxFor = 7 * 24 * 3600000 -- the longest ForceOpen a command may hold, ms
local recent = 60000 -- how long a release, reset or probe stays in the index, ms

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

-- report reads a replica's report, or nil if it is not one.
local function report(v)
  if not v then return nil end
  local sess, sq, at, s, f, over = string.match(v, '^(%S+) (%d+) (%d+) (%d+) (%d+) ([01])$')
  if not sess then return nil end
  local r = {sess = sess, seq = int(sq, 0, 2^53), at = int(at, 0, now), s = int(s, 0, 2^52), f = int(f, 0, 2^52),
    over = over == '1'}
  if r.seq == nil or r.at == nil or r.s == nil or r.f == nil then return nil end
  return r
end

local out = {}
local announce = {}
local ki, ordinal = 1, 0
for g = 1, ngroups do
  -- A group: the keys of one shard. A sync's requests apply if it is
  -- fresh: newer than the last one of this session applied here, or of
  -- another session. Read only for a group with requests.
  local REPS, IDX, n = KEYS[ki], KEYS[ki + 1], tonumber(ARGV[8 + g])
  local fresh = nil
  local function isFresh()
    if fresh == nil then
      local rec = redis.pcall('HGET', REPS, '')
      if type(rec) == 'table' and rec.err then redis.call('DEL', REPS); rec = false end
      local psess, pseq = nil, nil
      if rec then psess, pseq = string.match(rec, '^(%S+) (%d+)$') end
      fresh = psess ~= session or seq > (int(pseq, 0, 2^53) or -1)
      if fresh then
        redis.call('HSET', REPS, '', session .. ' ' .. seq)
        redis.call('PEXPIRE', REPS, keep)
      end
    end
    return fresh
  end

  for i = 1, n do
    local WIN, HOLD, LEASES, CMD = KEYS[ki + 4*i - 2], KEYS[ki + 4*i - 1], KEYS[ki + 4*i], KEYS[ki + 4*i + 1]
    local a = base + per * (ordinal + i - 1)
    local key = ARGV[a + 1]
    local window = int(ARGV[a + 2], 0, 86400000) or 10000
    local maxHold = int(ARGV[a + 9], 1, 86400000) or 300000
    local changed = false

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
    local reset = false
    local kind = ARGV[a + 26]
    if kind ~= '' and isFresh() then
      local dur, age = int(ARGV[a + 27], 0, maxFor) or 0, int(ARGV[a + 29], 0, 2^40) or 0
      local made = int(ARGV[a + 30], 1, 2^53)
      local at = made and math.min(made, nowUs) or (nowUs - age * 1000)
      local expired = kind == 'force_open' and dur > 0 and math.floor(at / 1000) + dur <= now
      if not expired and (cmd.at == nil or at > cmd.at) then
        redis.call('DEL', CMD)
        redis.call('HSET', CMD, 'at', at, 'kind', kind, 'for', dur, 'by', ARGV[a + 28], 'replica', replica)
        cmd = {at = at, kind = kind, ['for'] = dur, by = ARGV[a + 28], replica = replica}
        if kind == 'reset' then
          redis.call('DEL', WIN, HOLD, LEASES)
          hold, reset = nil, true
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
    if ARGV[a + 10] == '1' and (hold == nil or hold.phase == 'closed') and isFresh() then
      open(int(ARGV[a + 11], 1, maxHold) or maxHold, int(ARGV[a + 12], 0, maxHold) or 0, ARGV[a + 13],
        int(ARGV[a + 14], 0, 2^52) or 0, int(ARGV[a + 15], 0, 2^52) or 0, int(ARGV[a + 16], 0, 2^20) or 0)
      hold = readHold()
    end

    -- A probe's result, if its lease still stands.
    local slots, need = int(ARGV[a + 18], 1, 1000) or 1, int(ARGV[a + 19], 1, 1000) or 1
    need = math.min(need, slots)
    if ARGV[a + 20] == '1' and hold ~= nil and hold.phase == 'open' and hold.gen == tonumber(ARGV[a + 21]) and
        redis.call('HDEL', LEASES, ARGV[a + 22]) == 1 then
      local outcome = ARGV[a + 23]
      if outcome == 's' then
        if redis.call('HINCRBY', HOLD, 'probed', 1) >= need then
          -- Closed: every replica starts a new window, and so does the fleet.
          redis.call('HSET', HOLD, 'phase', 'closed')
          redis.call('DEL', LEASES, WIN)
          redis.call('PEXPIRE', HOLD, 60000)
          reset = true
        end
        changed = true
      elseif outcome == 'f' then
        -- A failure reopens the key once too few probes are left to succeed.
        if redis.call('HINCRBY', HOLD, 'failed', 1) > slots - need then
          open(int(ARGV[a + 24], 1, maxHold) or maxHold, int(ARGV[a + 25], 0, maxHold) or 0, 'probe_failed', 0, 0, 0)
        else
          changed = true
        end
      end
      hold = readHold()
    end

    -- The window: this replica's report replaces its last one in the
    -- running sums. A report made before the window was emptied (a reset,
    -- the fleet's probes closing the key) is not kept.
    local m = redis.pcall('HMGET', WIN, 'S', 'F', 'N', 'U', 'g', 'C', 'x', 'e', 'r:' .. replica)
    if m.err then redis.call('DEL', WIN); m = {} end
    local S, F, N, U = int(m[1], 0, 2^52) or 0, int(m[2], 0, 2^52) or 0, int(m[3], 0, 2^20) or 0, int(m[4], 0, 2^20) or 0
    local gat, C, x = int(m[5], 0, now), int(m[6], 0, 2^20) or 0, int(m[7], 0, now) or 0
    local wasGathering = m[5] ~= nil and m[5] ~= false
    local since = gat and gat - every -- reports since then count for the gathering
    local wrote, entry = false, nil
    local minF, q = int(ARGV[a + 7], 0, 2^52) or 0, int(ARGV[a + 8], 1, 1000) or 1
    if ARGV[a + 3] == '1' and not reset then
      local rs, rf = int(ARGV[a + 4], 0, 2^52) or 0, int(ARGV[a + 5], 0, 2^52) or 0
      local rover = ARGV[a + 6] == '1' and rf > 0
      local old = report(m[9])
      if not (old and old.sess == session and old.seq > seq) and (old or gat or rf > 0) then
        if old then
          S, F = S - old.s, F - old.f
          if old.f > 0 then N = N - 1 end
          if old.over then U = U - 1 end
        end
        S, F = math.max(S + rs, 0), math.max(F + rf, 0)
        if rf > 0 then N = N + 1 end
        if rover then U = U + 1 end
        N, U = math.max(N, 0), math.max(U, 0)
        if gat and not (old and old.at >= since) then
          C = C + 1
          -- The last report the gathering waited for, from a replica with
          -- no breaker for the key: the others decide.
          if C == nlive and minF == 0 then changed = true end
        end
        entry = session .. ' ' .. seq .. ' ' .. now .. ' ' .. rs .. ' ' .. rf .. ' ' .. (rover and '1' or '0')
        wrote = true
      end
    end

    -- Sums the reports again: those of live replicas, in the window; the
    -- others are deleted.
    local function resum()
      if entry then
        redis.call('HSET', WIN, 'r:' .. replica, entry)
        entry = nil
      end
      local raw = redis.pcall('HGETALL', WIN)
      if raw.err then redis.call('DEL', WIN); raw = {} end
      S, F, N, U, C = 0, 0, 0, 0, 0
      local gone = {}
      for j = 1, #raw, 2 do
        local name = string.match(raw[j], '^r:(.+)$')
        if name then
          local r = report(raw[j + 1])
          if r == nil or not isLive(name) or (window > 0 and r.at < now - window) then
            gone[#gone + 1] = raw[j]
          else
            S, F = S + r.s, F + r.f
            if r.f > 0 then N = N + 1 end
            if r.over then U = U + 1 end
            if since and r.at >= since then C = C + 1 end
          end
        elseif #raw[j] ~= 1 then
          gone[#gone + 1] = raw[j]
        end
      end
      for j = 1, #gone, 1000 do redis.call('HDEL', WIN, unpack(gone, j, math.min(j + 999, #gone))) end
      x, wrote = now, true
    end
    -- A trip is possible: with enough failures, from enough replicas, one
    -- of which fails at the trip's rate on its own. Then the fleet gathers
    -- every replica's window.
    local isOpen = hold ~= nil and hold.phase == 'open'
    local function possible() return F >= minF and N >= q and U >= 1 and not isOpen end
    if minF > 0 and not gat and possible() then
      gat, since = now, now - every
      resum()
      if possible() then
        changed = true -- announced: every replica reports
      else
        gat, since = nil, nil
      end
    elseif minF > 0 and gat and not possible() then
      gat, since, wrote = nil, nil, true
    end
    local complete = false
    if gat then
      complete = C >= nlive or now >= gat + 3 * every
      if complete and now - x >= every then
        resum()
        if minF > 0 and not possible() then gat, since = nil, nil end
        complete = gat ~= nil and (C >= nlive or now >= gat + 3 * every)
      end
    end
    if wrote then
      -- One write: the report, the sums, the gathering, and the TTL only
      -- when half of it has gone.
      local ttl = math.max(2 * window, keep)
      local e = int(m[8], 0, now + ttl) -- past that, not what this script wrote: the TTL is set again
      local fields = {'S', S, 'F', F, 'N', N, 'U', U, 'x', x}
      if entry then fields[#fields + 1], fields[#fields + 2] = 'r:' .. replica, entry end
      if gat then fields[#fields + 1], fields[#fields + 2], fields[#fields + 3], fields[#fields + 4] = 'g', gat, 'C', C end
      if e == nil or e - now < ttl / 2 then fields[#fields + 1], fields[#fields + 2] = 'e', now + ttl end
      redis.call('HSET', WIN, unpack(fields))
      if not gat and wasGathering then redis.call('HDEL', WIN, 'g', 'C') end
      if e == nil or e - now < ttl / 2 then redis.call('PEXPIRE', WIN, ttl) end
    end

    -- A probe lease: one of the hold's slots, once its cooldown is over. A
    -- replica that sends the same sync again gets the lease it was granted.
    local lease = ''
    local leaseFor = int(ARGV[a + 17], 0, maxHold) or 0
    local token = replica .. '/' .. session .. '/' .. seq
    if leaseFor > 0 and hold ~= nil and hold.phase == 'open' and now >= hold['until'] then
      if not isFresh() and redis.call('HEXISTS', LEASES, token) == 1 then
        lease = token
      else
        local taken = 0
        for tok, exp in pairs(hash(LEASES)) do
          local e = int(exp, 0, now + 2 * maxHold)
          if e == nil or e < now then redis.call('HDEL', LEASES, tok) else taken = taken + 1 end
        end
        if isFresh() and taken + hold.probed + hold.failed < slots then
          lease = token
          redis.call('HSET', LEASES, lease, now + leaseFor)
          redis.call('PEXPIRE', LEASES, leaseFor + keep)
          redis.call('PEXPIRE', HOLD, leaseFor + keep)
        end
      end
    end

    -- The shard's index lists the keys the fleet holds something for, so
    -- that a replica that missed an announcement finds them.
    local function index(op)
      local r = redis.pcall(op, IDX, key, 1)
      if type(r) == 'table' and r.err then
        redis.call('DEL', IDX)
        redis.call(op, IDX, key, 1)
      end
    end
    if hold ~= nil or gat or cmd.kind == 'force_open' or cmd.kind == 'force_close' or
        (cmd.at ~= nil and cmd.at / 1000 > now - recent) then
      if changed or gat or held then
        index('HSET')
        redis.call('PEXPIRE', IDX, keep)
      end
    elseif held or ARGV[a + 3] ~= '1' then
      index('HDEL')
    end

    if changed then announce[#announce + 1] = key end

    local function num(v) return tonumber(v) and int(v, 0, 2^52) or 0 end
    out[#out + 1] = S
    out[#out + 1] = F
    out[#out + 1] = N
    out[#out + 1] = (gat and 1 or 0) + (complete and 2 or 0)
    if hold == nil then
      out[#out + 1] = 0
    else
      out[#out + 1] = {hold.gen, hold.phase, hold['until'] - now, hold.nominal, hold.probed, hold.reason or '',
        hold.replica or '', num(hold.f), num(hold.s), num(hold.failing)}
    end
    out[#out + 1] = lease
    if cmd.at == nil then
      out[#out + 1] = 0
    else
      local left = 0
      if cmd['for'] > 0 then
        left = math.floor(cmd.at / 1000) + cmd['for'] - now
        if left <= 0 then left = -1 end
      end
      out[#out + 1] = {cmd.at, cmd.kind, left, cmd.by or '', cmd.replica or ''}
    end
  end
  ki, ordinal = ki + 2 + 4 * n, ordinal + n
end
for _, key in ipairs(announce) do redis.call('PUBLISH', channel, key) end
return out
`)
