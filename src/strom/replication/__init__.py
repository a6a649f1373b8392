"""Replication's pure parts: what a partition's leader knows about its followers (ISR, high
watermark) and how a follower reconciles its log with its leader's. The shell that fetches,
writes ISR changes to the metadata store and parks acks=all produces is strom.server.replicas.
"""
