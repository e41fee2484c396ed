"""The raw mpi4py loop the pool is compared with: rank 0 hands out N small tasks one at a time to
whichever worker answers, workers reply; blocking send/recv (the fastest possible, and spinning).

    mpiexec -n 4 python bench/raw_mpi_loop.py 20000
"""

import sys
import time

from mpi4py import MPI


def main():
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    n = int(sys.argv[1])
    if rank == 0:
        start = time.perf_counter()
        sent = done = 0
        status = MPI.Status()
        for worker in range(1, size):
            if sent < n:
                comm.send({"run_id": "r%d" % sent, "params": {"x": sent}}, dest=worker)
                sent += 1
        while done < n:
            comm.recv(source=MPI.ANY_SOURCE, status=status)
            done += 1
            if sent < n:
                comm.send({"run_id": "r%d" % sent, "params": {"x": sent}}, dest=status.Get_source())
                sent += 1
        for worker in range(1, size):
            comm.send(None, dest=worker)
        elapsed = time.perf_counter() - start
        print("%.1f" % (n / elapsed))
    else:
        while True:
            task = comm.recv(source=0)
            if task is None:
                break
            comm.send({"run_id": task["run_id"], "status": "ok", "objective": 0.0}, dest=0)


if __name__ == "__main__":
    main()
