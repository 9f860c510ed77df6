"""The pure core: no Redis, no Label Studio, no network. Embeddings, the classifier, query
strategies, the learning step, stop rules, assignment, neighbour search and dataset reading."""
