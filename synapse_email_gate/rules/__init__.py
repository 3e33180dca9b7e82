"""Pure, no Synapse: usernames, addresses, IPs, proof of work, identifiers, moderators, rooms."""
