"""The agent: the protocol (prompt, rendering, parsing), the episode loop, backends, traces and `medscope ask`."""
