"""The live wing: one conversation over the SDK (session, input, tool calls, connect, audio,
transcript, MCP approvals)."""
