"""The monitor: the web console served by the hub at /monitor/."""
