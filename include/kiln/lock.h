/* Folder locks (kl_lock): one kiln process at a time writes a run folder (kiln train) or a sweep
 * folder (kiln tune). The lock is flock(2) on a file inside the folder, so it ends with its holder
 * however that ends (exit, a crash, kill -9, a Slurm requeue): the file stays behind, the lock
 * does not. The file says who holds it (pid, host, start time, command line), so that a refusal
 * can name the holder. */
#ifndef KILN_LOCK_H
#define KILN_LOCK_H

#include "kiln/status.h"

/* The lock file's name inside a locked folder. */
#define KL_DIR_LOCK_FILE "kiln.lock"

typedef struct kl_lock kl_lock;

/* Locks the existing folder dir for this process. `what` names the folder in messages ("run",
 * "sweep"). A folder another process holds (or this process through another lock) is refused
 * with KL_EBUSY and a message naming the holder; a folder where the lock file cannot be made is
 * KL_EIO. The lock lasts until kl_dir_unlock or the process's end. */
kl_status kl_dir_lock(const char *dir, const char *what, kl_lock **out, kl_error *err);
/* Releases and frees the lock (NULL is a no-op); the file stays, emptied. */
void kl_dir_unlock(kl_lock *lock);

#endif
