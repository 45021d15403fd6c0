"""Photo popularity: a daily training set for a model that predicts which photos get liked."""
