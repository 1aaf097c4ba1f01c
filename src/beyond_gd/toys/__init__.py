"""The chapter's toy problems (surfaces, the random walk) as pure maths: arrays in, arrays out."""
