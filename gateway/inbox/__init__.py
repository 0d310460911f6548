"""Intake: the ``Inbox`` interface (base), its local and SFTP kinds, onboarding checks, and
durable receipt."""
