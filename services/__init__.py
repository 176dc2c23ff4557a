"""What the command line, the web app and the actors all call: linking, revoke, rights, retention, exports."""
