"""KIP-932 share groups: share-partition state and its persistence."""
