"""Shared pytest fixtures."""

from sftp_server import cut_proxy as cut_proxy
from sftp_server import sshd as sshd
