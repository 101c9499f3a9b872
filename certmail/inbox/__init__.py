"""The recipient's mailboxes: Maildir, mbox and IMAP (docs/inbox.md).

- :mod:`.notarized`: the bytes the notary saw, found again in a delivered copy;
- :mod:`.spool`: private temporary copies, streamed and bounded;
- :mod:`.source`: the :class:`~.source.Source` protocol every mailbox kind keeps;
- :mod:`.maildir`, :mod:`.mbox`, :mod:`.imap` (with :mod:`.imapurl`, :mod:`.guard`):
  the kinds;
- :mod:`.summary`: certmail's view of one message for ``inbox list``.
"""
