"""What moderators do, however they ask: the admin service, moderators, the room bot."""
