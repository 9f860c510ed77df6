"""Labels as data: aggregation, agreement, the adjudication queue, the training policy, label
files, guidelines and Label Studio's labelling interface format. Pure: no services."""
