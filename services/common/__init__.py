"""The small shared kit every service builds on: settings, errors, events, tokens, stores."""
