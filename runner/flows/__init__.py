"""Conversation flows: a profile's node graph walked on one speech-to-speech session."""
