"""Numbers that say how good something is: classifier and embedding metrics, Frechet distances,
generator sample quality, reconstruction PSNR/SSIM."""
