"""Speech for every role: prompts by stable id, prompt packs (recorded voices), the day/night volume."""
