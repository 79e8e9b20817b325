"""The public leaderboard: a static site from stores (:mod:`.site`), re-checking entries (:mod:`.verify`) and sealed
submissions (:mod:`.submit`)."""
