"""Tests of the TikTok emulator."""
