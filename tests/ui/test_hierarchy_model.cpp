// The linked hierarchy as a Qt item model, checked by QAbstractItemModelTester on a real pyramid.

#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QtTest/QtTest>

#include "explorer_fixture.h"
#include "fec/ui/hierarchy_model.h"

using namespace fec::ui;

class TestHierarchyModel : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        FEC_REQUIRE_FIXTURE("tiny_seed0.pth.tar");
        m_result = fec::test::explain(*fec::test::loadBundle());
        QVERIFY(m_result);
        QCOMPARE(m_result->pyramid.levelCount(), 3);
    }

    void passesTheModelTester()
    {
        HierarchyModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setResult(m_result);
        // The tester walks the whole tree on reset; fetch every node again to exercise parent().
        QCOMPARE(model.rowCount(), static_cast<int>(m_result->pyramid.levelNodes.back().size()));
        model.setResult(nullptr);
        QCOMPARE(model.rowCount(), 0);
        model.setResult(m_result);
    }

    void treeFollowsTheHierarchy()
    {
        HierarchyModel model;
        model.setResult(m_result);
        const auto& p = m_result->pyramid;
        // Roots are the last level's clusters; under each, exactly its children, down to level 1.
        int seen = 0;
        std::function<void(const QModelIndex&, int)> walk = [&](const QModelIndex& parent, int level) {
            for (int row = 0; row < model.rowCount(parent); ++row) {
                const QModelIndex index = model.index(row, 0, parent);
                const int node = model.nodeOf(index);
                QVERIFY(node >= 0);
                QCOMPARE(p.nodes[node].level, level);
                QCOMPARE(model.data(index, HierarchyModel::LevelRole).toInt(), level);
                QCOMPARE(model.indexOfNode(node), index);
                if (parent.isValid())
                    QCOMPARE(p.nodes[node].parent, model.nodeOf(parent));
                QCOMPARE(model.rowCount(index), static_cast<int>(p.nodes[node].children.size()));
                QCOMPARE(model.data(model.index(row, HierarchyModel::BlocksColumn, parent)).toLongLong(),
                         p.nodes[node].blocks);
                QCOMPARE(model.data(model.index(row, HierarchyModel::PixelsColumn, parent)).toLongLong(),
                         p.nodes[node].pixels);
                ++seen;
                walk(index, level - 1);
            }
        };
        walk(QModelIndex(), p.levelCount());
        QCOMPARE(seen, static_cast<int>(p.nodes.size()));
    }

    void showsLabelsAndSwatches()
    {
        HierarchyModel model;
        model.setResult(m_result);
        const QModelIndex first = model.index(0, 0);
        const int node = model.nodeOf(first);
        const auto& n = m_result->pyramid.nodes[node];
        QCOMPARE(model.data(first).toString(), QStringLiteral("L%1 #%2").arg(n.level).arg(n.cluster));
        QVERIFY(model.data(first, Qt::DecorationRole).value<QIcon>().isNull() == false);
        QVERIFY(model.data(model.index(0, HierarchyModel::BoxColumn)).toString().contains(QLatin1Char(',')));
        QCOMPARE(model.headerData(0, Qt::Horizontal).toString(), QStringLiteral("Segment"));
        QVERIFY(!model.indexOfNode(-1).isValid());
        QVERIFY(!model.indexOfNode(static_cast<int>(m_result->pyramid.nodes.size())).isValid());
    }

private:
    ExplainResultPtr m_result;
};

QTEST_MAIN(TestHierarchyModel)
#include "test_hierarchy_model.moc"
