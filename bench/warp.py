"""Time the SMPL-guided warp (training/deformation/warp.py): throughput of its stages, and its share of the
portrait generator's forward at the bench preset.

Usage (from the repository root; the allocator setting matters on the build VMs, see scripts/env.sh):

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \\
        python bench/warp.py [--batch 1 4] [--rays 4096] [--samples 96] [--threads 2] [--runs 3]
        [--warmup 1] [--method auto|cpp|clustered|brute] [--mesh body|sphere] [--device cpu]
        [--share-runs 5] [--no-share]

Throughput. Points are one render's worth per batch element: --rays rays (64^2 = 4096 at neural
rendering resolution 64) of --samples sorted stratified depths between the near and far planes, from
cameras on the portrait sphere (configs.schema.CameraConfig) at random yaw over 360 degrees. The mesh
is the procedural SMPL stand-in body (6890 vertices) restricted to the faces inside the canonical box
and posed by a fixed neck+head pose, or, with --mesh sphere, a head-sized icosphere of similar size.
Stages: brute force (on a subset), the standalone search (a tree built per posed mesh), the warp's
search (the canonical tree refitted to the posed meshes, as MeshWarp does), the PyTorch frame transfer
given the faces, the warp forward (with the compiled kernel: search and transfer fused) and
forward+backward (the sum of the warped points differentiated w.r.t. the posed vertices). Every stage
is timed once per run, stages interleaved; the median over --runs runs is printed (after --warmup
untimed runs), as wall time and as process CPU time (all threads), which is less sensitive to other
jobs on a shared machine. The points are passed ray by ray (samples of a ray contiguous), as the
renderer passes them; the compiled search relies on that order for its speed (warm starts).

Share of the generator's forward (unless --no-share): G at the `bench` preset in the 'warp' case of
bench/generator.py (pose from G's pose branch, every coarse and fine sample warped), timed as
bench/generator.py --profile times modules: per forward, the CPU time inside the body_warp.warp
module (the search structures, transforms and both warp calls) against the CPU time of the whole
forward, medians over --share-runs forwards. The posing (LBS) runs outside that module and is timed
on its own.
"""
import argparse
import math
import os
import statistics
import sys
import time

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')   # before torch loads OpenMP; see docs/performance.md "Warp"

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs.schema import CameraConfig  # noqa: E402
from training import cameras  # noqa: E402
from training.deformation import nearest_triangle_cpp  # noqa: E402
from training.deformation.point_to_mesh import (SEARCH_METHODS, brute_force_nearest_triangles,  # noqa: E402
                                                nearest_triangles, resolve_method)
from training.deformation.warp import MeshWarp, face_transforms, transfer_points  # noqa: E402

RAY_START, RAY_END = 2.25, 3.3      # training near/far planes (system.md §3)
BOX_HALF_SIZE = 0.5                 # canonical box, faces inside it are searched (system.md §2.5)
THICKNESS = 0.25                    # train.py --thickness default (system.md §1.1)
POSE = (0.3, 0.2, -0.1, 0.25, -0.4, 0.1)   # neck then head axis-angle, radians
PITCH_RANGE = 0.3                   # radians either side of the horizon
BRUTE_SUBSET = 256                  # the brute-force reference is timed on 1/256 of batch element 0
SHARE_WARMUP = 2                    # untimed generator forwards before the share is measured


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options; defaults are one 64^2 render per batch element on the CPU."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 4])
    parser.add_argument('--rays', type=int, default=4096)
    parser.add_argument('--samples', type=int, default=96, help='depths per ray (coarse + fine)')
    parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs first')
    parser.add_argument('--method', default='auto', choices=SEARCH_METHODS)
    parser.add_argument('--mesh', default='body', choices=['body', 'sphere'])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--share', action=argparse.BooleanOptionalAction, default=True,
                        help="the warp's share of the generator's forward at the bench preset (CPU only)")
    parser.add_argument('--share-runs', type=int, default=5, help='generator forwards timed for the share')
    return parser.parse_args(argv)


def body_mesh():
    """Procedural body: canonical vertices [V,3], box faces [F,3], posed vertices [1,V,3] for POSE."""
    from training.deformation.body_model import BodyModel
    body = BodyModel.procedural()
    with torch.no_grad():
        posed = body.posed_vertices(torch.tensor([POSE]))
    return body.canonical_vertices, body.faces[body.box_faces(BOX_HALF_SIZE)], posed


def sphere_mesh():
    """Head-sized icosphere (10242 vertices) at the look-at; posed = rotated about the neck by POSE[:3]."""
    import trimesh
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.12)
    vertices = torch.tensor(sphere.vertices, dtype=torch.float32) + torch.tensor(CameraConfig().lookat)
    faces = torch.tensor(sphere.faces, dtype=torch.long)
    angle = torch.tensor(POSE[:3])
    rotation = torch.linalg.matrix_exp(torch.cross(torch.eye(3), angle.expand(3, 3), dim=-1))  # exp([w]x)
    return vertices, faces, (vertices @ rotation.T)[None]


def render_points(batch: int, rays: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """Sample points [batch, rays * samples, 3] along the rays of a square image per random camera."""
    cfg = CameraConfig()
    side = int(math.isqrt(rays))
    yaw = torch.rand(batch, generator=generator) * 2 * math.pi - math.pi
    pitch = (torch.rand(batch, generator=generator) * 2 - 1) * PITCH_RANGE
    cam2world = cameras.look_at_pose(yaw, pitch, cfg.lookat, cfg.radius)  # [B, 4, 4]
    u = (torch.arange(side) + 0.5) / side - cfg.principal
    v, u = torch.meshgrid(u, u, indexing='ij')
    local = torch.stack([u / cfg.focal, v / cfg.focal, torch.ones_like(u)], dim=-1).view(-1, 3)
    directions = torch.nn.functional.normalize(local @ cam2world[:, :3, :3].transpose(1, 2), dim=-1)
    bins = torch.linspace(RAY_START, RAY_END, samples + 1)
    depth = bins[:-1] + torch.rand(batch, side * side, samples, generator=generator) * (bins[1] - bins[0])
    points = cam2world[:, None, None, :3, 3] + directions[:, :, None] * depth[..., None]
    return points.view(batch, -1, 3)


def timed(fn, device):
    """(wall time, process CPU time) of one fn() call in seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu


def stages(warp, points, posed, method):
    """The timed stages as name -> zero-argument callable, and the fraction of points within thickness."""
    with torch.no_grad():
        face_index, _ = nearest_triangles(points, posed, warp.faces, THICKNESS, method, warp.chunk,
                                          warp.cluster_order)
    inside = face_index >= 0
    subset = points[0, ::BRUTE_SUBSET]
    leaf = posed.clone().requires_grad_(True)

    def forward_backward():
        canonical, _ = warp(points, leaf)
        canonical.sum().backward()

    def transfer():
        with torch.no_grad():
            transfer_points(points, face_index, inside, face_transforms(posed, warp.canonical_vertices, warp.faces))

    fns = {'brute force (1/256 of sample 0)': lambda: brute_force_nearest_triangles(subset, posed[0], warp.faces),
           'search, tree per posed mesh': lambda: nearest_triangles(points, posed, warp.faces, THICKNESS, method,
                                                                    warp.chunk, warp.cluster_order)}
    if resolve_method(method, points) == 'cpp':
        fns['search, refitted canonical tree'] = lambda: nearest_triangle_cpp.search(
            nearest_triangle_cpp.refit(warp.derived('tree'), posed, warp.faces), points, THICKNESS)
    fns.update({'frame transfer (PyTorch)': transfer,
                'forward': lambda: warp(points, posed),
                'forward+backward': forward_backward})
    return fns, inside.float().mean().item()


def throughput(args, device) -> None:
    """Print points/second of every stage for each batch size."""
    canonical, faces, posed = body_mesh() if args.mesh == 'body' else sphere_mesh()
    warp = MeshWarp(canonical, faces, THICKNESS, method=args.method).to(device)
    print(f'mesh {args.mesh}: V={canonical.shape[0]}, searched faces F={faces.shape[0]}, thickness {THICKNESS}, '
          f'threads {torch.get_num_threads()}, device {device}, method {args.method} '
          f'({resolve_method(args.method, torch.zeros(1, 3, device=device))})')
    generator = torch.Generator().manual_seed(0)
    for batch in args.batch:
        points = render_points(batch, args.rays, args.samples, generator).to(device)
        posed_batch = posed.expand(batch, -1, -1).contiguous().to(device)
        fns, inside = stages(warp, points, posed_batch, args.method)
        times = {name: [] for name in fns}
        for run in range(args.warmup + args.runs):
            for name, fn in fns.items():
                elapsed = timed(fn, device)
                if run >= args.warmup:
                    times[name].append(elapsed)
        print(f'batch {batch}: {points.shape[1]} points per sample, {points.shape[0] * points.shape[1]} in all, '
              f'{100 * inside:.1f}% within thickness')
        for name, values in times.items():
            count = len(range(0, points.shape[1], BRUTE_SUBSET)) if 'brute' in name else points.numel() // 3
            wall, cpu = (max(statistics.median(v), 1e-9) for v in zip(*values))
            print(f'  {name:32s} {wall * 1e3:9.1f} ms  {count / wall / 1e6:7.3f} M points/s   '
                  f'(CPU {cpu:6.3f} s: {count / cpu / 1e6:6.3f} M points per CPU-second)')


def generator_share(runs: int) -> None:
    """Print the warp's CPU time per generator forward at the bench preset, and its share of the forward."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import generator as bench_generator  # bench/generator.py: the same G, case and module hooks
    _, G, z, c = bench_generator.build('bench', torch.device('cpu'))
    forward, _ = bench_generator.make_case(G, z, c, 'warp')
    counted = []
    hook = G.body_warp.warp.register_forward_pre_hook(lambda module, inputs: counted.append(inputs[0].numel() // 3))
    warp_seconds, totals = [], []
    for run in range(SHARE_WARMUP + runs):
        counted.clear()
        start = time.process_time()
        parts = bench_generator.module_times(G, forward)
        total = time.process_time() - start
        if run >= SHARE_WARMUP:
            warp_seconds.append(parts['body_warp/warp'])
            totals.append(total)
    hook.remove()
    with torch.no_grad():
        pose = G.get_pose_params(z, c)
        posing = statistics.median(timed(lambda: G.body_warp.body.posed_vertices(pose), torch.device('cpu'))[1]
                                   for _ in range(max(runs, 5)))
    warp, total = statistics.median(warp_seconds), statistics.median(totals)
    share = statistics.median(w / t for w, t in zip(warp_seconds, totals))
    print(f'generator, bench preset, warp case, forward ({torch.get_num_threads()} threads, medians of {runs}): '
          f'{sum(counted)} points warped in {len(counted)} calls')
    print(f'  warp module {warp * 1e3:7.1f} ms CPU of {total * 1e3:7.1f} ms CPU per forward: {100 * share:.1f}% '
          f'({sum(counted) / warp / 1e6:.2f} M points per CPU-second); posing (LBS, outside the module) '
          f'{posing * 1e3:.2f} ms CPU')


def main(argv=None):
    """Throughput of every stage, then the share of the generator's forward."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    throughput(args, device)
    if args.share and device.type == 'cpu':
        generator_share(args.share_runs)


if __name__ == '__main__':
    main()
