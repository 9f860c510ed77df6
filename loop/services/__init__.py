"""Everything outside the process: Redis (`store`, the only module that speaks Redis), Label Studio
(`labelstudio`, the only module that speaks to it), the sync between them, the item vectors, the
local stack, settings and the per-command context."""
