"""`vlrun ring`: a simulated carrier that rings a running `vlrun serve --serve-file`.

It plays the provider's side of a phone call over loopback, as Twilio, Azure Communication
Services or Voice Live SIP would: the signed webhook, the media socket, a caller who speaks
(a WAV file, espeak-ng text or DTMF keys) and an ear that plays what it hears in real time,
echoes what must be echoed and records it. It is a client of the server, never part of it:
nothing in runner/serve imports it.

- :mod:`runner.carrier.voice`: the caller's turns and what they sound like; the recording;
- :mod:`runner.carrier.line`: the 20 ms clock of one call (mouth, ear, marks, turn-taking);
- :mod:`runner.carrier.twilio`, :mod:`runner.carrier.acs`, :mod:`runner.carrier.sip`: the
  providers' sides;
- :mod:`runner.carrier.ring`: one call from ring to hang-up, and its exit code.
"""
