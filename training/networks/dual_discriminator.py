"""Pose-aware dual discriminator (system.md §5 and §4.2): realism logit and body-pose estimate from one backbone.

Input: 7 channels at the final resolution R, [image (3), raw image resized to R (3), mask resized
to R and mapped to [-1, 1] by 2m - 1 (1)]. A residual StyleGAN2 D (stylegan2.Discriminator) runs
down to the 4x4 epilogue; its flattened features feed (a) the pose predictor P_D together with the
camera and (b) the projection head, conditioned on c_D = [camera (25), P_D's own pose estimate,
DETACHED (6)] through a c-only mapping network.
"""
import math
from typing import Mapping, Optional, Sequence

import torch

from torch_utils import persistence
from torch_utils.ops import upfirdn2d
from training.networks.layers import check_shape
from training.networks.pose_branch import DPosePredictor
from training.networks.stylegan2 import Discriminator
from training.networks.superresolution import resize_antialiased
from training.networks.symmetry import CAMERA_DIM, POSE_DIM, fold_camera, fold_images, is_left, unfold_pose

IMG_CHANNELS = 3
SEG_CHANNELS = 1
INPUT_CHANNELS = 2 * IMG_CHANNELS + SEG_CHANNELS


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps exp(-x^2 / (2 sigma^2)) for x in [-ceil(3 sigma), ceil(3 sigma)]; sigma > 0."""
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    f = torch.exp(-taps.square() / (2 * sigma ** 2))
    return f / f.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of x [N, C, H, W] with std `sigma` pixels, zero padding, same size (§5 blur).

    sigma == 0 returns x itself. `sigma` is the true standard deviation; the StyleGAN3/EG3D loss
    used taps 2^-(x / sigma)^2 (std about 0.85 sigma, radius floor(3 sigma)) for the same schedule.
    """
    if sigma < 0:
        raise ValueError(f'blur_sigma: expected >= 0, got {sigma}')
    if sigma == 0:
        return x
    return upfirdn2d.filter2d(x, gaussian_kernel(sigma).to(x.device))


def _check_images(img: Mapping[str, torch.Tensor]) -> None:
    """Raise ValueError naming the entry unless img holds image [N,3,R,R], image_raw [N,3,r,r], image_mask [N,1,m,m]."""
    if not isinstance(img, Mapping):
        raise ValueError(f'img: expected a dict with image, image_raw, image_mask, got {type(img).__name__}')
    for key in ('image', 'image_raw', 'image_mask'):
        if key not in img:
            raise ValueError(f'img: missing key {key!r} (expected image, image_raw, image_mask)')
    batch = None
    for key, channels in (('image', IMG_CHANNELS), ('image_raw', IMG_CHANNELS), ('image_mask', SEG_CHANNELS)):
        check_shape(f'img[{key!r}]', img[key], [batch, channels, None, None])
        batch = int(img[key].shape[0])
        if img[key].shape[-1] != img[key].shape[-2]:
            raise ValueError(f'img[{key!r}]: expected a square image, got shape {list(img[key].shape)}')


@persistence.persistent_class
class DualDiscriminator(torch.nn.Module):
    """D(img, c) -> dict(logits [N, 1], pose [N, 6]); img = dict(image, image_raw, image_mask), c [N, 25].

    Explicit symmetry (§2.6). The default runs the backbone twice, as the original does: once on
    the folded batch for the pose, once on the unfolded batch for the logit. It must, because a
    folded logit cannot see a left/right asymmetry of G's distribution (below). `fold_logits=True`
    trades that for ONE backbone pass: the whole 7-channel input of left samples
    (camera t_x >= 0) is flipped and their camera mirrored, the backbone runs once on this folded
    batch, P_D predicts the pose in the folded frame from (features, folded camera), and the
    realism logit uses the same features conditioned on (folded camera, folded pose, detached).
    So for left samples D judges the mirror image of the (image, camera, pose) triple. With x-flip
    augmentation the real distribution is mirror-symmetric, so the folded game has the same
    optimum for the symmetrised fake distribution; what it cannot see is a left/right asymmetry
    of G's distribution itself (a "chirality" that only the mirror of a sample would reveal).
    The second pass is skipped when a batch has no left samples.
    """

    def __init__(self, img_resolution: int, architecture: str = 'resnet', channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 4, conv_clamp: Optional[float] = 256,
                 cmap_dim: Optional[int] = None, disc_c_noise: float = 0.0,
                 pose_hidden_features: Sequence[int] = (2048, 512, 128, 32), fold_logits: bool = False,
                 block_kwargs: Optional[dict] = None, mapping_kwargs: Optional[dict] = None,
                 epilogue_kwargs: Optional[dict] = None):
        super().__init__()
        if disc_c_noise < 0:
            raise ValueError(f'disc_c_noise: expected >= 0, got {disc_c_noise}')
        self.img_resolution = img_resolution
        self.disc_c_noise = disc_c_noise
        self.fold_logits = fold_logits
        self.backbone = Discriminator(c_dim=CAMERA_DIM + POSE_DIM, img_resolution=img_resolution,
                                      img_channels=INPUT_CHANNELS, architecture=architecture,
                                      channel_base=channel_base, channel_max=channel_max,
                                      num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, cmap_dim=cmap_dim,
                                      block_kwargs=block_kwargs, mapping_kwargs=mapping_kwargs,
                                      epilogue_kwargs=epilogue_kwargs)
        self.pose_predictor = DPosePredictor(self.backbone.b4.feature_dim, hidden_features=pose_hidden_features)

    def build_input(self, img: Mapping[str, torch.Tensor], blur_sigma: float = 0) -> torch.Tensor:
        """dict(image [N,3,R,R], image_raw [N,3,r,r], image_mask [N,1,m,m]) -> D input [N, 7, R, R].

        Raw and mask are resized to R (bilinear, antialiased); the mask becomes 2m - 1; image and
        resized raw are blurred with `blur_sigma` pixels of the final resolution (0 = no blur).
        """
        _check_images(img)
        check_shape("img['image']", img['image'], [None, IMG_CHANNELS, self.img_resolution, self.img_resolution])
        rgb = torch.cat([img['image'], resize_antialiased(img['image_raw'], self.img_resolution)], dim=1)
        mask = resize_antialiased(img['image_mask'], self.img_resolution) * 2 - 1
        return torch.cat([gaussian_blur(rgb.to(torch.float32), blur_sigma), mask.to(torch.float32)], dim=1)

    def _features(self, x: torch.Tensor, **block_kwargs) -> torch.Tensor:
        """D input [N, 7, R, R] -> flattened epilogue features [N, C4 * 4 * 4] (after minibatch std)."""
        x, img = self.backbone.run_blocks(x, **block_kwargs)
        return self.backbone.b4.features(x, img)

    def _fold_and_predict(self, img, c, blur_sigma, **block_kwargs):
        """Fold left samples, run the backbone once -> (left [N], folded c, folded input, features, folded pose)."""
        x = self.build_input(img, blur_sigma)
        check_shape('c', c, [x.shape[0], CAMERA_DIM])
        left = is_left(c)
        c_folded = fold_camera(c.to(torch.float32), left)
        x_folded = fold_images(x, left)
        features = self._features(x_folded, **block_kwargs)
        return left, c_folded, x, features, self.pose_predictor(features, c_folded)

    def _logits(self, features: torch.Tensor, c: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Projection head on features [N, F] conditioned on c_D = [c, pose.detach()] (+ disc_c_noise) -> [N, 1]."""
        c_D = torch.cat([c, pose.detach()], dim=1)
        if self.training and self.disc_c_noise > 0 and c_D.shape[0] > 1:
            c_D = c_D + torch.randn_like(c_D) * c_D.std(dim=0) * self.disc_c_noise
        return self.backbone.b4.head(features, self.backbone.conditioning(c_D))

    def predict_pose(self, img: Mapping[str, torch.Tensor], c: torch.Tensor, blur_sigma: float = 0,
                     **block_kwargs) -> torch.Tensor:
        """img dict (see build_input), c [N, 25] -> P_D's pose estimate [N, 6] in the frame of c."""
        left, _, _, _, pose_folded = self._fold_and_predict(img, c, blur_sigma, **block_kwargs)
        return unfold_pose(pose_folded, left)

    def forward(self, img: Mapping[str, torch.Tensor], c: torch.Tensor, update_emas: bool = False,
                blur_sigma: float = 0, **block_kwargs) -> dict:
        """img dict (see build_input), c [N, 25] -> dict(logits [N, 1], pose [N, 6]).

        `pose` is NOT detached (for the pose loss on fakes, §4.2); the copy inside c_D is.
        update_emas is accepted for the D(..., update_emas) convention; D keeps no running stats.
        block_kwargs: force_fp32.
        """
        left, c_folded, x, features, pose_folded = self._fold_and_predict(img, c, blur_sigma, **block_kwargs)
        pose = unfold_pose(pose_folded, left)
        if self.fold_logits:    # one backbone pass: left samples are judged as their mirror image
            logits = self._logits(features, c_folded, pose_folded)
        else:
            unfolded = self._features(x, **block_kwargs) if bool(left.any()) else features
            logits = self._logits(unfolded, c.to(torch.float32), pose)
        return dict(logits=logits, pose=pose)

    def extra_repr(self) -> str:
        return (f'img_resolution={self.img_resolution}, disc_c_noise={self.disc_c_noise}, '
                f'fold_logits={self.fold_logits}')
