package redisstate

// What the tests of package redisstate_test need of the store's insides.
var (
	KeysOf    = (*Store).keys
	ChannelOf = (*Store).channel
	ShardOf   = shard
)
