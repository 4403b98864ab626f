package sandboxcli

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/airut/airut/internal/sandbox"
)

func newImageCmd(stdout, stderr io.Writer) *cobra.Command {
	var o runOpts
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Image cache for CI: hash, save DIR, load DIR",
	}
	pf := cmd.PersistentFlags()
	addRulesFlags(pf, &o)
	pf.StringVar(&o.containerCommand, "container-command", "podman", "container engine: podman or docker")
	pf.Float64Var(&o.maxImageAge, "max-image-age", sandbox.DefaultMaxImageAge.Hours(), "rebuild images older than this many hours")
	pf.BoolVar(&o.verbose, "verbose", false, "show the container engine commands")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fail(ExitUsage, "%s", err) })

	hash := &cobra.Command{
		Use:   "hash",
		Short: "Print the content hash of the build context (a CI cache key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bctx, err := contextFromCwd(cmd.Context(), &o, stderr)
			if err != nil {
				return err
			}
			h, err := sandbox.ContextHash(bctx)
			if err != nil {
				return fail(ExitUsage, "%v", err)
			}
			fmt.Fprintln(stdout, h)
			return nil
		},
	}
	save := &cobra.Command{
		Use:   "save DIR",
		Short: "Build the image if needed and save it to DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cache, err := newCache(&o, stderr)
			if err != nil {
				return err
			}
			bctx, err := contextFromCwd(cmd.Context(), &o, stderr)
			if err != nil {
				return err
			}
			tag, release, err := cache.Ensure(cmd.Context(), bctx)
			if err != nil {
				return fail(ExitInfra, "%s", oneLine(err))
			}
			defer release()
			path, err := cache.SaveImage(cmd.Context(), tag, args[0])
			if err != nil {
				return fail(ExitInfra, "%s", oneLine(err))
			}
			fmt.Fprintf(stdout, "saved %s to %s\n", tag, path)
			return nil
		},
	}
	load := &cobra.Command{
		Use:   "load DIR",
		Short: "Load images saved with image save",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cache, err := newCache(&o, stderr)
			if err != nil {
				return err
			}
			if err := cache.LoadImages(cmd.Context(), args[0], stdout); err != nil {
				return fail(ExitInfra, "%s", oneLine(err))
			}
			return nil
		},
	}
	cmd.AddCommand(hash, save, load)
	return cmd
}

// contextFromCwd is the build context run would use in the working
// directory: read from the same trusted ref, so a CI cache keyed by image
// hash holds the image of the trusted Dockerfile.
func contextFromCwd(ctx context.Context, o *runOpts, stderr io.Writer) (fs.FS, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, fail(ExitInfra, "working directory: %v", err)
	}
	r, err := openRules(ctx, o, cwd, stderr)
	if err != nil {
		return nil, err
	}
	bctx, err := buildContext(ctx, o, r)
	if err != nil {
		return nil, fail(ExitUsage, "%v", err)
	}
	return bctx, nil
}

func newCache(o *runOpts, stderr io.Writer) (*sandbox.ImageCache, error) {
	rt, err := sandbox.NewRuntime(o.containerCommand, newLogger(stderr, o.verbose))
	if err != nil {
		return nil, fail(ExitInfra, "%v", err)
	}
	if o.verbose {
		rt.Verbose = stderr
	}
	cache := sandbox.NewImageCache(rt, Prefix)
	cache.MaxAge = time.Duration(o.maxImageAge * float64(time.Hour))
	return cache, nil
}
