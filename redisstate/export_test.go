package redisstate

// What the tests of package redisstate_test need of the store's insides.
var (
	KeysOf    = (*Store).keys
	SentKeyOf = (*Store).sentKey
	IndexOf   = (*Store).indexKey
	ChannelOf = (*Store).channel
	ShardOf   = shard
	NeededACL = neededACL
)
