-- Retention: hand up to 2,000 freed pages back to the file system (auto_vacuum = incremental).
PRAGMA incremental_vacuum(2000)
