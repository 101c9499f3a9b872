"""Certified campaigns: one notice, each recipient its own certified message (docs/campaigns.md).

``create`` checks and records a campaign (:mod:`.create`, :mod:`.recipients`,
:mod:`.templates`); ``runner`` sends it through worker processes (:mod:`.worker`)
with durable per-recipient state (:mod:`.store`); ``report`` reads it back.
"""
