#include "fec/ui/pyramid3d_view.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include <ATen/ATen.h>

#include <vtkActor.h>
#include <vtkBillboardTextActor3D.h>
#include <vtkCallbackCommand.h>
#include <vtkCamera.h>
#include <vtkCellArray.h>
#include <vtkCellPicker.h>
#include <vtkCommand.h>
#include <vtkGenericOpenGLRenderWindow.h>
#include <vtkGenericRenderWindowInteractor.h>
#include <vtkImageData.h>
#include <vtkInteractorStyleTrackballCamera.h>
#include <vtkNew.h>
#include <vtkOpenGLFramebufferObject.h>
#include <vtkOpenGLState.h>
#include <vtkPlaneSource.h>
#include <vtkPoints.h>
#include <vtkPolyData.h>
#include <vtkPolyDataMapper.h>
#include <vtkProperty.h>
#include <vtkRenderer.h>
#include <vtkSmartPointer.h>
#include <vtkTextProperty.h>
#include <vtkTexture.h>

#include <QElapsedTimer>
#include <QMouseEvent>
#include <QOpenGLContext>
#include <QOpenGLExtraFunctions>
#include <QPointer>
#include <QWheelEvent>

#include "fec/imaging/render.h"
#include "fec/ui/selection_model.h"

namespace fec::ui {

namespace {

constexpr int kClickSlop = 4;          // logical pixels a click may move and stay a click
constexpr double kNodePickRadius = 7;  // logical pixels around a centroid that select its node

// RGB(A) cv::Mat -> image data with rows flipped (VTK's origin is bottom-left).
vtkSmartPointer<vtkImageData> toImageData(const cv::Mat& rgb, int components)
{
    auto image = vtkSmartPointer<vtkImageData>::New();
    image->SetDimensions(rgb.cols, rgb.rows, 1);
    image->AllocateScalars(VTK_UNSIGNED_CHAR, components);
    auto* dst = static_cast<unsigned char*>(image->GetScalarPointer());
    for (int y = 0; y < rgb.rows; ++y) {
        const auto* src = rgb.ptr<unsigned char>(rgb.rows - 1 - y);
        auto* row = dst + static_cast<size_t>(y) * rgb.cols * components;
        if (rgb.channels() == components) {
            std::memcpy(row, src, static_cast<size_t>(rgb.cols) * components);
        } else {
            for (int x = 0; x < rgb.cols; ++x) {
                for (int c = 0; c < components; ++c)
                    row[x * components + c] = c < rgb.channels() ? src[x * rgb.channels() + c] : 255;
            }
        }
    }
    return image;
}

vtkSmartPointer<vtkPolyData> pointCloud(const std::vector<std::array<double, 3>>& points)
{
    vtkNew<vtkPoints> pts;
    vtkNew<vtkCellArray> verts;
    for (const auto& p : points) {
        const vtkIdType id = pts->InsertNextPoint(p.data());
        verts->InsertNextCell(1, &id);
    }
    auto poly = vtkSmartPointer<vtkPolyData>::New();
    poly->SetPoints(pts);
    poly->SetVerts(verts);
    return poly;
}

vtkSmartPointer<vtkPolyData> segments(const std::vector<std::array<double, 3>>& ends)
{
    vtkNew<vtkPoints> pts;
    vtkNew<vtkCellArray> lines;
    for (size_t i = 0; i + 1 < ends.size(); i += 2) {
        const vtkIdType ids[2] = {pts->InsertNextPoint(ends[i].data()), pts->InsertNextPoint(ends[i + 1].data())};
        lines->InsertNextCell(2, ids);
    }
    auto poly = vtkSmartPointer<vtkPolyData>::New();
    poly->SetPoints(pts);
    poly->SetLines(lines);
    return poly;
}

vtkSmartPointer<vtkActor> actorFor(vtkPolyData* poly)
{
    vtkNew<vtkPolyDataMapper> mapper;
    mapper->SetInputData(poly);
    mapper->ScalarVisibilityOff();
    auto actor = vtkSmartPointer<vtkActor>::New();
    actor->SetMapper(mapper);
    actor->PickableOff();
    return actor;
}

}  // namespace

struct Pyramid3DView::Private {
    Pyramid3DView* q = nullptr;
    ExplainResultPtr result;
    QPointer<SelectionModel> selection;
    double spacing = 0.3;

    vtkNew<vtkGenericOpenGLRenderWindow> window;
    vtkNew<vtkRenderer> renderer;
    vtkNew<vtkGenericRenderWindowInteractor> interactor;
    vtkNew<vtkInteractorStyleTrackballCamera> style;
    vtkNew<vtkCellPicker> picker;
    std::vector<unsigned long> observers;

    bool initialized = false;
    bool sceneDirty = true, highlightDirty = true, rendered = false, cameraPlaced = false;
    int sceneInput = 0, sceneLevels = 0;  // geometry the camera was placed for
    double frameMs = 0;

    // Scene: planes[0] is the image, planes[l] level l; level textures are rewritten on selection.
    std::vector<vtkSmartPointer<vtkActor>> planes;
    std::vector<vtkSmartPointer<vtkImageData>> levelTextures;
    std::vector<cv::Mat> levelColours;                     // colourised block labels per level (RGB)
    std::vector<vtkSmartPointer<vtkActor>> dynamicActors;  // nodes and links, rebuilt on selection
    std::vector<vtkSmartPointer<vtkProp>> labels;
    std::vector<int> planeOrder;  // the order the planes were last added to the renderer in

    // Mouse.
    QPointF pressPos;
    Qt::MouseButton pressButton = Qt::NoButton;
    bool moved = false;

    double z(int level) const { return level * spacing * (result ? static_cast<double>(result->pyramid.inputW) : 1.0); }

    std::array<double, 3> nodePosition(const HierarchyNode& n) const
    {
        const double h = static_cast<double>(result->pyramid.inputH);
        return {n.cx, h - n.cy, z(n.level) + 0.002 * result->pyramid.inputW};
    }

    double dpr() const { return q->devicePixelRatioF(); }
    QSize deviceSize() const { return q->size() * dpr(); }

    void clearScene()
    {
        renderer->RemoveAllViewProps();
        planes.clear();
        planeOrder.clear();
        levelTextures.clear();
        levelColours.clear();
        dynamicActors.clear();
        labels.clear();
        picker->InitializePickList();
    }

    void buildScene()
    {
        sceneDirty = false;
        highlightDirty = true;
        clearScene();
        if (!result || result->pyramid.levelCount() == 0)
            return;
        const auto& pyramid = result->pyramid;
        const double w = static_cast<double>(pyramid.inputW), h = static_cast<double>(pyramid.inputH);

        const auto plane = [&](double zz, vtkImageData* texImage, bool interpolate) {
            vtkNew<vtkPlaneSource> source;
            source->SetOrigin(0, 0, zz);
            source->SetPoint1(w, 0, zz);
            source->SetPoint2(0, h, zz);
            vtkNew<vtkPolyDataMapper> mapper;
            mapper->SetInputConnection(source->GetOutputPort());
            vtkNew<vtkTexture> texture;
            texture->SetInputData(texImage);
            texture->SetInterpolate(interpolate);
            texture->SetColorModeToDirectScalars();
            auto actor = vtkSmartPointer<vtkActor>::New();
            actor->SetMapper(mapper);
            actor->SetTexture(texture);
            actor->GetProperty()->SetAmbient(1.0);
            actor->GetProperty()->SetDiffuse(0.0);
            actor->GetProperty()->SetSpecular(0.0);
            renderer->AddActor(actor);
            picker->AddPickList(actor);
            planes.push_back(actor);
            return actor;
        };
        const auto label = [&](const QString& text, double zz) {
            vtkNew<vtkBillboardTextActor3D> actor;
            actor->SetInput(text.toUtf8().constData());
            actor->SetPosition(-0.03 * w, 0.5 * h, zz);
            auto* tp = actor->GetTextProperty();
            tp->SetFontSize(13);
            tp->SetColor(0.93, 0.94, 0.96);
            tp->SetJustificationToRight();
            tp->SetVerticalJustificationToCentered();
            tp->SetBackgroundColor(0.08, 0.09, 0.11);
            tp->SetBackgroundOpacity(0.6);
            actor->PickableOff();
            renderer->AddActor(actor);
            labels.push_back(vtkSmartPointer<vtkProp>(actor.GetPointer()));
        };

        if (!result->prepared.rgb.empty())
            plane(0, toImageData(result->prepared.rgb, 3), true);
        else
            plane(0, toImageData(cv::Mat(1, 1, CV_8UC3, cv::Scalar(128, 128, 128)), 3), false);
        label(QObject::tr("Image %1x%2").arg(pyramid.inputW).arg(pyramid.inputH), 0);

        for (int l = 1; l <= pyramid.levelCount(); ++l) {
            const auto& lv = pyramid.levels[l - 1];
            levelColours.push_back(imaging::colourise(pyramid.blockLabels(l)));
            auto tex = toImageData(levelColours.back(), 4);
            levelTextures.push_back(tex);
            plane(z(l), tex, false);
            label(QObject::tr("Level %1 · %2 clusters (%3x%4)")
                      .arg(l)
                      .arg(lv.nonEmpty.size())
                      .arg(lv.gridH)
                      .arg(lv.gridW),
                  z(l));
        }

        const bool geometryChanged = sceneInput != pyramid.inputW || sceneLevels != pyramid.levelCount();
        sceneInput = static_cast<int>(pyramid.inputW);
        sceneLevels = pyramid.levelCount();
        if (!cameraPlaced || geometryChanged)
            placeCamera();
        else
            renderer->ResetCameraClippingRange();
    }

    void placeCamera()
    {
        cameraPlaced = true;
        auto* camera = renderer->GetActiveCamera();
        camera->SetFocalPoint(0, 0, 0);
        camera->SetPosition(0, 0, 1);
        camera->SetViewUp(0, 1, 0);
        renderer->ResetCamera();
        camera->Elevation(-58);
        camera->OrthogonalizeViewUp();
        camera->Azimuth(-28);
        camera->OrthogonalizeViewUp();
        renderer->ResetCamera();
        camera->Zoom(1.1);
        renderer->ResetCameraClippingRange();
    }

    // The selected node's lineage: for each level the highlighted compact labels.
    std::vector<std::set<int>> lineage(int node) const
    {
        const auto& pyramid = result->pyramid;
        std::vector<std::set<int>> sets(pyramid.levelCount());
        if (node < 0 || node >= static_cast<int>(pyramid.nodes.size()))
            return sets;
        const auto& n = pyramid.nodes[node];
        const auto compactOf = [&](int id) {
            const auto& m = pyramid.nodes[id];
            return pyramid.levels[m.level - 1].compact[m.cluster];
        };
        for (int l = 1; l < n.level; ++l)
            for (int id : pyramid.descendantsAt(node, l))
                sets[l - 1].insert(compactOf(id));
        for (int id = node; id >= 0; id = pyramid.nodes[id].parent)
            sets[pyramid.nodes[id].level - 1].insert(compactOf(id));
        return sets;
    }

    std::set<int> lineageNodes(int node) const
    {
        std::set<int> ids;
        const auto& pyramid = result->pyramid;
        if (node < 0 || node >= static_cast<int>(pyramid.nodes.size()))
            return ids;
        for (int l = 1; l < pyramid.nodes[node].level; ++l)
            for (int id : pyramid.descendantsAt(node, l))
                ids.insert(id);
        for (int id = node; id >= 0; id = pyramid.nodes[id].parent)
            ids.insert(id);
        return ids;
    }

    void applyHighlight()
    {
        highlightDirty = false;
        for (auto& a : dynamicActors)
            renderer->RemoveActor(a);
        dynamicActors.clear();
        if (!result || levelTextures.empty())
            return;
        const auto& pyramid = result->pyramid;
        int selected = selection ? selection->selectedNode() : -1;
        if (selected >= static_cast<int>(pyramid.nodes.size()))
            selected = -1;
        const auto sets = lineage(selected);
        const auto ids = lineageNodes(selected);

        // Level textures: the lineage bright and nearly opaque, the rest faint.
        for (int l = 1; l <= pyramid.levelCount(); ++l) {
            const auto& colours = levelColours[l - 1];
            const auto labelsMap = pyramid.blockLabels(l).contiguous();
            const int32_t* lab = labelsMap.data_ptr<int32_t>();
            auto* dst = static_cast<unsigned char*>(levelTextures[l - 1]->GetScalarPointer());
            const int rows = colours.rows, cols = colours.cols;
            for (int y = 0; y < rows; ++y) {
                const auto* src = colours.ptr<unsigned char>(rows - 1 - y);
                const int32_t* labRow = lab + static_cast<size_t>(rows - 1 - y) * cols;
                for (int x = 0; x < cols; ++x) {
                    auto* px = dst + (static_cast<size_t>(y) * cols + x) * 4;
                    const bool lit = selected < 0 || sets[l - 1].count(labRow[x]);
                    const double k = lit ? 1.0 : 0.45;
                    for (int c = 0; c < 3; ++c)
                        px[c] = static_cast<unsigned char>(src[x * 3 + c] * k);
                    px[3] = selected < 0 ? 185 : (lit ? 235 : 45);
                }
            }
            levelTextures[l - 1]->Modified();
        }

        std::vector<std::array<double, 3>> normal, lit, chosen, normalLinks, litLinks;
        for (const auto& n : pyramid.nodes) {
            const auto p = nodePosition(n);
            const bool inLineage = ids.count(n.id) > 0;
            if (n.id == selected)
                chosen.push_back(p);
            else if (inLineage)
                lit.push_back(p);
            else
                normal.push_back(p);
            if (n.parent >= 0) {
                auto& bucket = inLineage && ids.count(n.parent) ? litLinks : normalLinks;
                bucket.push_back(p);
                bucket.push_back(nodePosition(pyramid.nodes[n.parent]));
            }
        }
        const bool any = selected >= 0;
        const auto add = [&](vtkSmartPointer<vtkActor> actor) {
            renderer->AddActor(actor);
            dynamicActors.push_back(actor);
            return actor.GetPointer();
        };
        if (!normalLinks.empty()) {
            // Opaque, so that they need no sorting against the translucent planes.
            auto* a = add(actorFor(segments(normalLinks)));
            a->GetProperty()->SetColor(any ? 0.21 : 0.62, any ? 0.23 : 0.64, any ? 0.26 : 0.68);
            a->GetProperty()->SetLineWidth(1);
            a->GetProperty()->LightingOff();
        }
        if (!litLinks.empty()) {
            auto* a = add(actorFor(segments(litLinks)));
            a->GetProperty()->SetColor(1.0, 0.86, 0.25);
            a->GetProperty()->SetLineWidth(3);
            a->GetProperty()->SetRenderLinesAsTubes(true);
        }
        if (!normal.empty()) {
            auto* a = add(actorFor(pointCloud(normal)));
            a->GetProperty()->SetColor(any ? 0.5 : 0.97, any ? 0.52 : 0.97, any ? 0.55 : 0.97);
            a->GetProperty()->SetPointSize(static_cast<float>((any ? 3.0 : 4.5) * dpr()));
            a->GetProperty()->SetRenderPointsAsSpheres(true);
        }
        if (!lit.empty()) {
            auto* a = add(actorFor(pointCloud(lit)));
            a->GetProperty()->SetColor(1.0, 0.86, 0.25);
            a->GetProperty()->SetPointSize(static_cast<float>(8 * dpr()));
            a->GetProperty()->SetRenderPointsAsSpheres(true);
        }
        if (!chosen.empty()) {
            auto* a = add(actorFor(pointCloud(chosen)));
            a->GetProperty()->SetColor(1.0, 0.35, 0.2);
            a->GetProperty()->SetPointSize(static_cast<float>(14 * dpr()));
            a->GetProperty()->SetRenderPointsAsSpheres(true);
        }
    }

    // Painter's order for the translucent planes: farthest from the camera first. The planes are
    // parallel, so the distance along their normal decides for every ray.
    void sortPlanes()
    {
        if (planes.empty())
            return;
        double eye[3];
        renderer->GetActiveCamera()->GetPosition(eye);
        std::vector<int> order(planes.size());
        for (size_t i = 0; i < order.size(); ++i)
            order[i] = static_cast<int>(i);
        const auto distance = [&](int i) { return std::abs(eye[2] - planes[i]->GetCenter()[2]); };
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return distance(a) > distance(b); });
        if (order == planeOrder)
            return;
        planeOrder = order;
        for (auto& p : planes)
            renderer->RemoveActor(p);
        for (auto& l : labels)
            renderer->RemoveViewProp(l);
        for (int i : order)
            renderer->AddActor(planes[i]);
        for (auto& l : labels)
            renderer->AddViewProp(l);
    }

    // Qt -> VTK mouse events (device pixels, y flipped by the interactor).
    void forward(QMouseEvent* event, unsigned long vtkEvent)
    {
        const QPointF p = event->position() * dpr();
        const auto mods = event->modifiers();
        interactor->SetEventInformationFlipY(static_cast<int>(p.x()), static_cast<int>(p.y()),
                                             (mods & Qt::ControlModifier) ? 1 : 0, (mods & Qt::ShiftModifier) ? 1 : 0);
        interactor->SetAltKey((mods & Qt::AltModifier) ? 1 : 0);
        interactor->InvokeEvent(vtkEvent, event);
    }

    bool displayOf(const std::array<double, 3>& world, double out[3]) const
    {
        renderer->SetWorldPoint(world[0], world[1], world[2], 1.0);
        renderer->WorldToDisplay();
        renderer->GetDisplayPoint(out);
        return true;
    }

    void releaseGraphics()
    {
        if (!initialized)
            return;
        window->ReleaseGraphicsResources(window);
        window->Finalize();
        initialized = false;
    }
};

Pyramid3DView::Pyramid3DView(QWidget* parent) : QOpenGLWidget(parent), d(std::make_unique<Private>())
{
    d->q = this;
    setFormat(defaultFormat());
    setMouseTracking(true);
    setFocusPolicy(Qt::StrongFocus);
    setMinimumSize(200, 150);
    setToolTip(tr("Left drag: rotate · wheel or right drag: zoom · middle or Shift+drag: pan · "
                  "click: select a segment · double-click: reset the view"));

    auto& w = d->window;
    w->SetMultiSamples(0);
    w->SetAlphaBitPlanes(1);
    w->SetFrameBlitModeToNoBlit();
    w->SetReadyForRendering(false);
    w->SetOwnContext(0);
    w->AddRenderer(d->renderer);

    d->renderer->GradientBackgroundOn();
    d->renderer->SetBackground(0.09, 0.10, 0.12);
    d->renderer->SetBackground2(0.23, 0.25, 0.29);
    // Translucent planes are sorted by hand (they are parallel): depth peeling cost ~75 ms a frame
    // in software GL.
    d->renderer->SetUseDepthPeeling(false);
    d->renderer->UseFXAAOn();

    d->interactor->SetRenderWindow(w);
    d->interactor->SetInteractorStyle(d->style);
    d->interactor->EnableRenderOff();
    d->interactor->Initialize();
    d->picker->SetTolerance(0.0005);
    d->picker->PickFromListOn();

    // VTK asks whether its context is current and to make it current: answer from Qt's context.
    const auto onEvent = [](vtkObject*, unsigned long event, void* clientData, void* callData) {
        auto* self = static_cast<Pyramid3DView*>(clientData);
        QOpenGLContext* ctx = self->context();
        if (event == vtkCommand::WindowMakeCurrentEvent) {
            if (ctx && QOpenGLContext::currentContext() != ctx)
                ctx->makeCurrent(ctx->surface());
        } else if (event == vtkCommand::WindowIsCurrentEvent) {
            *static_cast<bool*>(callData) = ctx && QOpenGLContext::currentContext() == ctx;
        }
    };
    for (auto event : {vtkCommand::WindowMakeCurrentEvent, vtkCommand::WindowIsCurrentEvent}) {
        vtkNew<vtkCallbackCommand> cb;
        cb->SetCallback(onEvent);
        cb->SetClientData(this);
        d->observers.push_back(w->AddObserver(event, cb));
    }
}

Pyramid3DView::~Pyramid3DView()
{
    // QOpenGLWidget destroys the context after this body: its aboutToBeDestroyed must not reach d.
    if (context())
        disconnect(context(), nullptr, this, nullptr);
    if (d->initialized && context()) {
        makeCurrent();
        d->clearScene();
        d->releaseGraphics();
        doneCurrent();
    }
    for (auto id : d->observers)
        d->window->RemoveObserver(id);
    d->interactor->SetRenderWindow(nullptr);
}

QSurfaceFormat Pyramid3DView::defaultFormat()
{
    QSurfaceFormat format;
    format.setRenderableType(QSurfaceFormat::OpenGL);
    format.setVersion(3, 2);
    format.setProfile(QSurfaceFormat::CoreProfile);
    format.setSwapBehavior(QSurfaceFormat::DoubleBuffer);
    format.setRedBufferSize(8);
    format.setGreenBufferSize(8);
    format.setBlueBufferSize(8);
    format.setAlphaBufferSize(8);
    format.setDepthBufferSize(24);
    format.setStencilBufferSize(0);
    format.setSamples(0);
    return format;
}

void Pyramid3DView::setResult(ExplainResultPtr result)
{
    if (result == d->result)
        return;
    d->result = std::move(result);
    d->sceneDirty = true;
    d->rendered = false;
    update();
}

void Pyramid3DView::setSelectionModel(SelectionModel* selection)
{
    if (d->selection == selection)
        return;
    if (d->selection)
        disconnect(d->selection, nullptr, this, nullptr);
    d->selection = selection;
    if (selection)
        connect(selection, &SelectionModel::selectedNodeChanged, this, [this] {
            d->highlightDirty = true;
            update();
        });
    d->highlightDirty = true;
    update();
}

void Pyramid3DView::setLevelSpacing(double spacing)
{
    spacing = std::clamp(spacing, 0.0, 5.0);
    if (spacing == d->spacing)
        return;
    d->spacing = spacing;
    d->sceneDirty = true;
    update();
}

double Pyramid3DView::levelSpacing() const
{
    return d->spacing;
}

void Pyramid3DView::resetCamera()
{
    d->placeCamera();
    update();
}

QImage Pyramid3DView::renderToImage()
{
    return grabFramebuffer();
}

bool Pyramid3DView::hasRendered() const
{
    return d->rendered;
}

double Pyramid3DView::lastFrameMs() const
{
    return d->frameMs;
}

QPointF Pyramid3DView::projectedNode(int node) const
{
    if (!d->result || !d->initialized || node < 0 || node >= static_cast<int>(d->result->pyramid.nodes.size()))
        return {-1, -1};
    double display[3];
    d->displayOf(d->nodePosition(d->result->pyramid.nodes[node]), display);
    const double ratio = d->dpr();
    return {display[0] / ratio, (d->deviceSize().height() - display[1]) / ratio};
}

QPointF Pyramid3DView::projectedPixel(QPointF modelPixel, int plane) const
{
    if (!d->result || !d->initialized)
        return {-1, -1};
    double display[3];
    d->displayOf({modelPixel.x(), d->result->pyramid.inputH - modelPixel.y(), d->z(plane)}, display);
    const double ratio = d->dpr();
    return {display[0] / ratio, (d->deviceSize().height() - display[1]) / ratio};
}

int Pyramid3DView::nodeAt(QPointF position) const
{
    if (!d->result || !d->initialized || d->result->pyramid.levelCount() == 0)
        return -1;
    const auto& pyramid = d->result->pyramid;
    const double ratio = d->dpr();
    const double px = position.x() * ratio, py = d->deviceSize().height() - position.y() * ratio;

    // A centroid near the mouse wins (nearest on screen, then nearest to the camera).
    int best = -1;
    double bestD = std::pow(kNodePickRadius * ratio, 2), bestZ = 2;
    for (const auto& n : pyramid.nodes) {
        double display[3];
        d->displayOf(d->nodePosition(n), display);
        const double dd = (display[0] - px) * (display[0] - px) + (display[1] - py) * (display[1] - py);
        if (dd < bestD - 1e-9 || (std::abs(dd - bestD) <= 1e-9 && display[2] < bestZ)) {
            best = n.id;
            bestD = dd;
            bestZ = display[2];
        }
    }
    if (best >= 0)
        return best;

    // Else the segment under the mouse on the nearest plane.
    if (!d->picker->Pick(px, py, 0, d->renderer))
        return -1;
    vtkActor* actor = d->picker->GetActor();
    const auto it =
        std::find_if(d->planes.begin(), d->planes.end(), [&](const auto& a) { return a.GetPointer() == actor; });
    if (it == d->planes.end())
        return -1;
    const int level = std::max(1, static_cast<int>(it - d->planes.begin()));
    double world[3];
    d->picker->GetPickPosition(world);
    const int u = std::clamp(static_cast<int>(std::floor(world[0])), 0, static_cast<int>(pyramid.inputW) - 1);
    const int v =
        std::clamp(static_cast<int>(std::floor(pyramid.inputH - world[1])), 0, static_cast<int>(pyramid.inputH) - 1);
    return pyramid.nodeOf(level, pyramid.clusterAt(level, u, v));
}

void Pyramid3DView::initializeGL()
{
    // A new context (first show, or the widget moved to another window): VTK starts over on it.
    d->initialized = false;
    d->window->SetReadyForRendering(true);
    d->window->OpenGLInitContext();
    d->initialized = true;
    d->window->SetDPI(static_cast<int>(std::lround(72 * d->dpr())));
    connect(context(), &QOpenGLContext::aboutToBeDestroyed, this, [this] {
        makeCurrent();
        d->releaseGraphics();
        doneCurrent();
    });
}

void Pyramid3DView::resizeGL(int, int)
{
    const QSize size = d->deviceSize();
    d->interactor->UpdateSize(size.width(), size.height());
    d->window->SetDPI(static_cast<int>(std::lround(72 * d->dpr())));
}

void Pyramid3DView::paintGL()
{
    if (!d->initialized)
        return;
    QElapsedTimer timer;
    timer.start();
    const QSize size = d->deviceSize();
    int* current = d->window->GetSize();
    if (current[0] != size.width() || current[1] != size.height())
        d->interactor->UpdateSize(size.width(), size.height());
    if (d->sceneDirty)
        d->buildScene();
    if (d->highlightDirty)
        d->applyHighlight();
    d->sortPlanes();

    // Qt changes GL state behind VTK's cache between frames: resynchronise, render, restore.
    vtkOpenGLState* state = d->window->GetState();
    state->Reset();
    state->Push();
    state->vtkglDepthFunc(GL_LEQUAL);
    d->window->Render();
    state->Pop();

    // VTK rendered into its own framebuffer: copy it into the widget's.
    QOpenGLExtraFunctions* f = context()->extraFunctions();
    f->glBindFramebuffer(GL_DRAW_FRAMEBUFFER, defaultFramebufferObject());
    const GLenum buffer = GL_COLOR_ATTACHMENT0;
    f->glDrawBuffers(1, &buffer);
    const GLboolean scissor = f->glIsEnabled(GL_SCISSOR_TEST);
    if (scissor)
        f->glDisable(GL_SCISSOR_TEST);
    int* rendered = d->window->GetRenderFramebuffer()->GetLastSize();
    d->window->BlitDisplayFramebuffer(0, 0, 0, rendered[0], rendered[1], 0, 0, size.width(), size.height(),
                                      GL_COLOR_BUFFER_BIT, GL_NEAREST);
    // Opaque alpha, or compositors blend the frame with what is behind the window.
    f->glColorMask(GL_FALSE, GL_FALSE, GL_FALSE, GL_TRUE);
    f->glClearColor(0, 0, 0, 1);
    f->glClear(GL_COLOR_BUFFER_BIT);
    f->glColorMask(GL_TRUE, GL_TRUE, GL_TRUE, GL_TRUE);
    if (scissor)
        f->glEnable(GL_SCISSOR_TEST);
    d->window->GetState()->Reset();

    d->frameMs = timer.nsecsElapsed() / 1e6;
    d->rendered = d->result != nullptr;
    Q_EMIT frameRendered();
}

void Pyramid3DView::mousePressEvent(QMouseEvent* event)
{
    d->pressPos = event->position();
    d->pressButton = event->button();
    d->moved = false;
    switch (event->button()) {
    case Qt::LeftButton:
        d->forward(event, vtkCommand::LeftButtonPressEvent);
        break;
    case Qt::MiddleButton:
        d->forward(event, vtkCommand::MiddleButtonPressEvent);
        break;
    case Qt::RightButton:
        d->forward(event, vtkCommand::RightButtonPressEvent);
        break;
    default:
        break;
    }
    event->accept();
}

void Pyramid3DView::mouseMoveEvent(QMouseEvent* event)
{
    if ((event->position() - d->pressPos).manhattanLength() > kClickSlop)
        d->moved = true;
    if (event->buttons() != Qt::NoButton) {
        d->forward(event, vtkCommand::MouseMoveEvent);
        d->renderer->ResetCameraClippingRange();
        update();
    } else if (d->selection && d->rendered) {
        d->selection->setHoveredNode(nodeAt(event->position()));
    }
    event->accept();
}

void Pyramid3DView::mouseReleaseEvent(QMouseEvent* event)
{
    switch (event->button()) {
    case Qt::LeftButton:
        d->forward(event, vtkCommand::LeftButtonReleaseEvent);
        break;
    case Qt::MiddleButton:
        d->forward(event, vtkCommand::MiddleButtonReleaseEvent);
        break;
    case Qt::RightButton:
        d->forward(event, vtkCommand::RightButtonReleaseEvent);
        break;
    default:
        break;
    }
    if (event->button() == Qt::LeftButton && d->pressButton == Qt::LeftButton && !d->moved && d->selection &&
        d->rendered)
        d->selection->setSelectedNode(nodeAt(event->position()));
    d->pressButton = Qt::NoButton;
    update();
    event->accept();
}

void Pyramid3DView::wheelEvent(QWheelEvent* event)
{
    const double steps = event->angleDelta().y() / 120.0;
    if (steps == 0) {
        event->ignore();
        return;
    }
    // Proportional zoom, also for the fine steps of touchpads.
    d->renderer->GetActiveCamera()->Dolly(std::pow(1.1, steps));
    d->renderer->ResetCameraClippingRange();
    update();
    event->accept();
}

void Pyramid3DView::mouseDoubleClickEvent(QMouseEvent* event)
{
    if (event->button() == Qt::LeftButton)
        resetCamera();
    event->accept();
}

void Pyramid3DView::leaveEvent(QEvent* event)
{
    if (d->selection)
        d->selection->setHoveredNode(-1);
    QOpenGLWidget::leaveEvent(event);
}

}  // namespace fec::ui
