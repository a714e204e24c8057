"""The console as a whole: the app, every screen's look, tables, untrusted text, tmux."""
